package main

import "github.com/spf13/cobra"

// examples are the help Examples of commands that do not set their own,
// kept in one place so that a command file stays about its command. Every
// visible command has Examples (TestEveryCommandHasExamples).
var examples = map[string]string{
	"warden access":            "  warden access --for 30m --reason \"read the payroll export\" /srv/payroll/2026-11.csv\n  warden access --write --for 1h /etc/nginx/sites-available",
	"warden approvals list":    "  warden approvals list",
	"warden apply":             "  sudo warden apply -f policies/dev-tools.json",
	"warden approvals":         "  sudo warden approvals\n  sudo warden approvals approve ap-1f3c --reason \"ticket 4711\"",
	"warden approvals approve": "  sudo warden approvals approve ap-1f3c --reason \"ticket 4711\"",
	"warden approvals deny":    "  sudo warden approvals deny ap-1f3c --reason \"not during the freeze\"",
	"warden audit": "  sudo warden audit --type POLICY_EVALUATION --since 1h\n" +
		"  sudo warden audit --user carol -o json\n  sudo warden audit --follow",
	"warden audit verify":  "  sudo warden audit verify",
	"warden backend":       "  warden backend serve --dir ./backend --listen 127.0.0.1:8443",
	"warden backend serve": "  warden backend serve --dir ./backend --listen 127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem",
	"warden bundle":        "  warden bundle keygen --out keys\n  warden bundle build --in desired --key keys/bundle.key --version 7 --out bundle-7.tar.gz",
	"warden bundle build":  "  warden bundle build --in desired --key keys/bundle.key --version 7 --expires 720h --out bundle-7.tar.gz",
	"warden bundle keygen": "  warden bundle keygen --out keys",
	"warden bundle verify": "  warden bundle verify bundle-7.tar.gz --pub keys/bundle.pub",
	"warden drift":         "  sudo warden drift\n  sudo warden drift --open -o json",
	"warden elevate":       "  warden elevate --reason \"install the VPN client\" -- apt install openvpn\n  warden elevate --no-wait -- systemctl restart nginx",
	"warden eval": "  sudo warden eval --user carol --app /usr/bin/nc --cmdline \"nc -l 4444\"\n" +
		"  sudo warden eval --user dave --groups developers --app /usr/bin/apt --explain -o json",
	"warden grants":       "  sudo warden grants\n  sudo warden grants -o json",
	"warden mfa":          "  sudo warden mfa enroll carol",
	"warden mfa enroll":   "  sudo warden mfa enroll carol",
	"warden register":     "  sudo systemctl stop warden\n  sudo warden register --backend https://backend.example/v1 --token - < token.txt\n  sudo systemctl start warden",
	"warden schema":       "  warden schema export > warden.cue && cue vet warden.cue policy.json",
	"warden status":       "  sudo warden status\n  sudo warden status -o json",
	"warden validate":     "  warden validate policies/dev-tools.json\n  warden validate ./desired/ bundle-7.tar.gz",
	"warden audit export": "  sudo warden audit export --since 24h > audit.ndjson",
}

// liveIDs are the commands whose argument completes from the running
// agent's ids, where the command sets no completion of its own.
var liveIDs = map[string]cobra.CompletionFunc{
	"warden approvals approve": completeApprovals,
	"warden approvals deny":    completeApprovals,
	"warden job run":           completeJobs,
	"warden job history":       completeJobs,
}

// fillExamples sets the Examples above (and the live-id completions) on
// commands that have none.
func fillExamples(c *cobra.Command) {
	if c.Example == "" {
		c.Example = examples[c.CommandPath()]
	}
	if fn := liveIDs[c.CommandPath()]; fn != nil && c.ValidArgsFunction == nil {
		c.ValidArgsFunction = fn
	}
	for _, sub := range c.Commands() {
		fillExamples(sub)
	}
}
