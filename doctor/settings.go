package doctor

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// appSettings reads the materialized ROOT/appsettings.json: what the
// agent actually enforces, readable whether or not it runs.
func (e *Env) appSettings() (map[string]any, error) {
	data, err := os.ReadFile(filepath.Join(e.Root, "appsettings.json"))
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(data, &m)
}

const settingsRemedy = "change the Settings document (bundle or `warden apply -f settings.json`)"

func checkAllowedHosts(e *Env) Result {
	hosts := e.settings().AllowedHosts
	if m, err := e.appSettings(); err == nil {
		if s, ok := m["AllowedHosts"].(string); ok {
			hosts = strings.Split(s, ";")
		}
	}
	if len(hosts) == 0 || slices.Contains(hosts, "*") {
		return warn(fmt.Sprintf("AllowedHosts is %q: any Host header is accepted", strings.Join(hosts, ";")),
			"set Settings allowedHosts to [\"localhost\", \"127.0.0.1\"]; "+settingsRemedy)
	}
	return pass("AllowedHosts: " + strings.Join(hosts, ";"))
}

func checkAltSigs(e *Env) Result {
	sigs := e.settings().AlternativeSignatures
	if m, err := e.appSettings(); err == nil {
		if l, ok := m["AlternativeSignatures"].([]any); ok {
			sigs = nil
			for _, s := range l {
				sigs = append(sigs, fmt.Sprint(s))
			}
		}
	}
	if len(sigs) > 0 {
		return warn("AlternativeSignatures trusts "+strings.Join(sigs, ", "),
			"remove thumbprints you do not need from Settings alternativeSignatures; "+settingsRemedy)
	}
	return pass("AlternativeSignatures is empty")
}

func checkCertPassword(e *Env) Result {
	if p, ok := e.settingsField("certificate", "password").(string); ok && p != "" {
		return fail("the Settings document stores a certificate password", "remove certificate.password: protect the key by file mode (0600, root)")
	}
	if m, err := e.appSettings(); err == nil {
		if c, ok := m["Certificate"].(map[string]any); ok {
			if p, _ := c["CertPassword"].(string); p != "" {
				return fail("appsettings.json holds a CertPassword", "remove CertPassword: the agent rewrites appsettings.json from Settings; restart it")
			}
		}
	}
	return pass("no certificate password stored")
}

func checkLogLevel(e *Env) Result {
	lvl := e.settings().Logging.Level
	if m, err := e.appSettings(); err == nil {
		if l, ok := m["Logging"].(map[string]any); ok {
			if ll, ok := l["LogLevel"].(map[string]any); ok {
				if d, ok := ll["Default"].(string); ok {
					lvl = d
				}
			}
		}
	}
	if strings.EqualFold(lvl, "Debug") || strings.EqualFold(lvl, "Trace") {
		return warn("log level is "+lvl, "set Settings logging.level to Information or Warning; "+settingsRemedy)
	}
	if lvl == "" {
		lvl = "Information"
	}
	return pass("log level " + lvl)
}

func checkAudit(e *Env) Result {
	switch {
	case !e.Data.AuditChecked:
		return warn("the audit chain could not be checked (no agent, store unreadable)", "run `sudo warden audit verify`")
	case e.Data.AuditBroken != "":
		return fail("audit chain broken: "+e.Data.AuditBroken, "keep the store for investigation; see docs/audit.md, \"A broken chain\"")
	}
	return pass(fmt.Sprintf("audit chain intact (%d events)", e.Data.AuditEvents))
}

// checkForwarding: logs are kept 15 days; the page says to forward them
// before that window ends. Settings audit.forward (issue 16's schema).
func checkForwarding(e *Env) Result {
	if l, ok := e.settingsField("audit", "forward").([]any); ok && len(l) > 0 {
		var kinds []string
		for _, f := range l {
			if m, ok := f.(map[string]any); ok {
				kinds = append(kinds, fmt.Sprint(m["type"]))
			}
		}
		var down []string
		for _, f := range e.Data.Forward {
			if f.Alerted {
				down = append(down, fmt.Sprintf("%s (down since %s, %d events waiting: %s)",
					f.Target, f.DownSince.UTC().Format(time.RFC3339), f.Lag, f.LastError))
			}
		}
		if len(down) > 0 {
			return warn("audit forwarding target unreachable: "+strings.Join(down, "; "),
				"events wait in the store until retention prunes them; check the receiver, its address and certificates (warden status -o json, auditForward)")
		}
		return pass("audit forwarded to " + strings.Join(kinds, ", "))
	}
	return warn("audit events are not forwarded; the agent keeps them 15 days",
		"add Settings audit.forward (syslog or file) to reach your SIEM; see docs/fleet.md")
}

func checkRegistration(e *Env) Result {
	if e.settings().Backend == nil || e.settings().Backend.URL == "" {
		return skip("no backend configured")
	}
	switch {
	case e.Data.Registered == nil:
		return skip("registration unknown while the agent holds the store")
	case !*e.Data.Registered:
		return fail("a backend is configured ("+e.settings().Backend.URL+") but the agent is not registered",
			"stop the agent, `warden register --backend URL --token -`, start it")
	}
	return pass("registered with " + e.settings().Backend.URL)
}
