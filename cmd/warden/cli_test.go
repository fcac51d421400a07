package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var wardenBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "warden-cli")
	if err != nil {
		panic(err)
	}
	wardenBin = filepath.Join(dir, "warden")
	if out, err := exec.Command("go", "build", "-o", wardenBin, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// warden runs the CLI and returns its combined output and exit code.
func warden(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(wardenBin, args...).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

const policyDoc = `{"kind": "Policy", "id": "dev-tools", "spec": {"name": "Developers may elevate package tools",
 "type": "PrivilegeElevation", "status": "enforce", "priority": 50, "controls": ["allow", "justification"],
 "durationSeconds": 900, "filters": {"groups": ["developers"], "applications": [{"path": "/usr/bin/apt*"}]}}}`

func TestValidateExitCodes(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "docs", "policies"), 0o755)
	good := filepath.Join(dir, "docs", "policies", "dev-tools.json")
	os.WriteFile(good, []byte(policyDoc), 0o644)
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(strings.Replace(policyDoc, "900", "30", 1)), 0o644)
	typo := filepath.Join(dir, "typo.json")
	os.WriteFile(typo, []byte(strings.Replace(policyDoc, `"priority"`, `"priorty"`, 1)), 0o644)
	// Valid for the schema, but the engine cannot compile it: validate
	// says so, as applying it would.
	window := filepath.Join(dir, "window.json")
	os.WriteFile(window, []byte(strings.Replace(policyDoc, `"filters": {`, `"filters": {"time": {"from": "22:00", "to": "22:00"}, `, 1)), 0o644)
	junk := filepath.Join(dir, "junk.tar.gz")
	os.WriteFile(junk, []byte("not a bundle"), 0o644)
	twin := filepath.Join(dir, "twin.json")
	os.WriteFile(twin, []byte(policyDoc), 0o644)
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"folder of documents", []string{"validate", filepath.Join(dir, "docs")}, 0, []string{"1 document(s) valid"}},
		{"out of range", []string{"validate", bad}, 1, []string{"bad.json: spec.durationSeconds: invalid value 30 (out of bound >=60)"}},
		{"every error of every file", []string{"validate", bad, typo}, 1, []string{"durationSeconds", "spec.priorty: field not allowed"}},
		{"missing path", []string{"validate", filepath.Join(dir, "nope.json")}, 2, []string{"nope.json"}},
		{"a broken bundle and a missing path hide no other file's errors", []string{"validate", junk, bad, filepath.Join(dir, "nope.json"), typo}, 1,
			[]string{"junk.tar.gz: ", "bad.json: spec.durationSeconds", "nope.json", "spec.priorty: field not allowed", "4 input(s)"}},
		{"policy the engine cannot compile", []string{"validate", window}, 1, []string{"window.json: spec.filters.time: from and to are both 22:00"}},
		{"same policy id twice", []string{"validate", good, twin}, 1, []string{"Policy/dev-tools"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, code := warden(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d; want %d\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Fatalf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	if out, code := warden(t, "schema", "export"); code != 0 || !strings.Contains(out, "#Policy:") {
		t.Fatalf("schema export: exit %d\n%s", code, out)
	}
}

func TestBundleRoundTripAndAgentCommands(t *testing.T) {
	dir := t.TempDir()
	docs := filepath.Join(dir, "docs")
	os.MkdirAll(filepath.Join(docs, "policies"), 0o755)
	os.WriteFile(filepath.Join(docs, "policies", "dev-tools.json"), []byte(policyDoc), 0o644)
	keys := filepath.Join(dir, "keys")
	if out, code := warden(t, "bundle", "keygen", "--out", keys); code != 0 {
		t.Fatalf("keygen: %d %s", code, out)
	}
	b := filepath.Join(dir, "b1.tar.gz")
	if out, code := warden(t, "bundle", "build", "--in", docs, "--key", filepath.Join(keys, "bundle.key"), "--version", "1", "--out", b); code != 0 {
		t.Fatalf("build: %d %s", code, out)
	}
	if out, code := warden(t, "bundle", "verify", b, "--pub", filepath.Join(keys, "bundle.pub")); code != 0 {
		t.Fatalf("verify: %d %s", code, out)
	}
	if out, code := warden(t, "validate", b); code != 0 {
		t.Fatalf("validate bundle: %d %s", code, out)
	}

	root := filepath.Join(dir, "root")
	if out, code := warden(t, "--root", root, "status"); code != 3 {
		t.Fatalf("status with no agent: exit %d; want 3 (no agent reachable)\n%s", code, out)
	}
	trustKey(t, root, keys)
	os.Chmod(root, 0o755)
	agent := startAgent(t, root)
	defer func() {
		agent.Process.Signal(syscall.SIGTERM)
		agent.Wait()
	}()
	os.Rename(b, filepath.Join(root, "inbox", "b1.tar.gz"))
	waitFor(t, func() bool {
		out, code := warden(t, "--root", root, "status", "--json")
		var st struct{ BundleVersion int64 }
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil && st.BundleVersion == 1
	})
	out, code := warden(t, "--root", root, "eval", "--user", "dave", "--groups", "developers", "--app", "/usr/bin/apt-get")
	if code != 1 || !strings.Contains(out, "decision:  justification") {
		t.Fatalf("eval without justification: exit %d; want 1, justification\n%s", code, out)
	}
	out, code = warden(t, "--root", root, "eval", "--user", "dave", "--groups", "developers", "--app", "/usr/bin/apt-get", "--justification", "patch")
	if code != 0 || !strings.Contains(out, "duration:  900 s (not granted here") || strings.Contains(out, "grant:") {
		t.Fatalf("eval with justification: exit %d; want 0 with the duration and no grant (an API decision makes none)\n%s", code, out)
	}
	// Tamper with a materialized file: drift is corrected, so `warden
	// drift` lists it and exits 0 (nothing open).
	p := filepath.Join(root, "policies", "dev-tools.json")
	waitFor(t, func() bool { _, err := os.Stat(p); return err == nil })
	os.Chmod(p, 0o666)
	waitFor(t, func() bool {
		out, code := warden(t, "--root", root, "drift", "--json")
		return code == 0 && strings.Contains(out, `"corrected"`)
	})
	// The drift record is stored before its audit event is written: wait
	// for the event too.
	waitFor(t, func() bool {
		out, code = warden(t, "--root", root, "audit", "--type", "DRIFT_CORRECTED")
		return code == 0 && strings.Contains(out, "DRIFT_CORRECTED")
	})
	if code != 0 || !strings.Contains(out, "DRIFT_CORRECTED") {
		t.Fatalf("audit --type: exit %d\n%s", code, out)
	}
	// The running agent holds the store: verify asks it to walk the chain.
	out, code = warden(t, "--root", root, "audit", "verify")
	if code != 0 || !strings.Contains(out, "chain intact (checked by the running agent)") {
		t.Fatalf("audit verify, agent running: exit %d\n%s", code, out)
	}
	// -o json is the same as --json; an unknown format is a usage error.
	if out, code := warden(t, "--root", root, "status", "-o", "json"); code != 0 || !json.Valid([]byte(out)) {
		t.Fatalf("status -o json: exit %d\n%s", code, out)
	}
	if out, code := warden(t, "--root", root, "status", "-o", "yaml"); code != 2 {
		t.Fatalf("status -o yaml: exit %d; want 2\n%s", code, out)
	}
	// doctor with the agent up: the live checks ran and passed.
	out, _ = warden(t, "--root", root, "doctor", "-o", "json")
	var doc struct {
		Results []struct{ Check, Status string }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("doctor -o json: %v\n%s", err, out)
	}
	for _, r := range doc.Results {
		if (r.Check == "listeners-loopback" || r.Check == "tls-minimum" || r.Check == "audit-chain") && r.Status != "pass" {
			t.Errorf("doctor, agent up: %s = %s; want pass\n%s", r.Check, r.Status, out)
		}
	}
	agent.Process.Signal(syscall.SIGTERM)
	agent.Wait()
	// audit export reads the store while the agent is stopped.
	out, code = warden(t, "--root", root, "audit", "export", "--type", "DRIFT_CORRECTED,AGENT_STOPPED")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) < 2 || !strings.Contains(out, `"type":"AGENT_STOPPED"`) || !json.Valid([]byte(lines[0])) {
		t.Fatalf("audit export, agent stopped: exit %d\n%s", code, out)
	}
	for _, l := range lines {
		if !strings.Contains(l, "DRIFT_CORRECTED") && !strings.Contains(l, "AGENT_STOPPED") {
			t.Fatalf("audit export --type: unexpected event %s", l)
		}
	}
	out, code = warden(t, "--root", root, "audit", "verify")
	if code != 0 || !strings.Contains(out, "chain intact\n") {
		t.Fatalf("audit verify, agent stopped: exit %d\n%s", code, out)
	}
}

// trustKey makes root trust the bundle key made in keys (trust/k.pub).
func trustKey(t *testing.T, root, keys string) {
	t.Helper()
	os.MkdirAll(filepath.Join(root, "trust"), 0o700)
	pub, err := os.ReadFile(filepath.Join(keys, "bundle.pub"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "trust", "k.pub"), pub, 0o600)
}

// startAgent starts the real agent on root, every listener on a free
// loopback port, and returns once it serves (run/agent.json). It is killed
// at the end of the test unless the caller stopped it first.
func startAgent(t *testing.T, root string) *exec.Cmd {
	t.Helper()
	agent := exec.Command(wardenBin, "--root", root, "agent", "--listen-api", "127.0.0.1:0",
		"--listen-health", "127.0.0.1:0", "--listen-mqtt", "127.0.0.1:0")
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agent.Process.Kill(); agent.Wait() })
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(root, "run", "agent.json")); return err == nil })
	return agent
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
