package doctor

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"warden/agent"
	"warden/agent/agenttest"
	"warden/audit"
)

// healthy builds an Env on real files that passes (or skips) every check:
// a root tree with the permission model, a binary, a sudoers file
// including a drop-in folder, a group file, a synchronized clock.
func healthy(t *testing.T) *Env {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	for _, d := range []string{"", "KeeperStorage", "certs", "Plugins"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(root, 0o755)
	bindir := filepath.Join(dir, "bin")
	os.Mkdir(bindir, 0o755)
	bin := filepath.Join(bindir, "warden-core") // the front, warden, would be beside it
	write(t, bin, "#!/bin/sh\n", 0o755)
	sudoersD := filepath.Join(dir, "sudoers.d")
	os.Mkdir(sudoersD, 0o750)
	write(t, filepath.Join(dir, "sudoers"), "root ALL=(ALL:ALL) ALL\n@includedir "+sudoersD+"\n", 0o440)
	write(t, filepath.Join(dir, "group"), "root:x:0:\nsudo:x:27:breakglass\n", 0o644)
	no := false
	settings := fmt.Sprintf(`{"allowedHosts": ["localhost", "127.0.0.1"], "logging": {"level": "Information"},
		"enforcement": {"sudoersDir": %q}, "audit": {"forward": [{"type": "file", "path": "/var/log/warden/audit.ndjson"}]}}`, sudoersD)
	return &Env{Root: root, Binary: bin, Sudoers: filepath.Join(dir, "sudoers"), GroupFile: filepath.Join(dir, "group"),
		Systemd: &no, Unsynced: func() (bool, error) { return false, nil },
		Data: Data{Settings: json.RawMessage(settings), AuditChecked: true, AuditEvents: 3,
			Policies: []json.RawMessage{json.RawMessage(`{"type": "LeastPrivilege", "status": "enforce",
				"leastPrivilege": {"adminGroups": ["sudo"], "standingAdmins": ["breakglass"]}}`)}}}
}

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
}

func result(rs []Result, check string) Result {
	for _, r := range rs {
		if r.Check == check {
			return r
		}
	}
	return Result{}
}

// setSetting rewrites one top-level Settings field.
func setSetting(t *testing.T, e *Env, key string, v any) {
	t.Helper()
	var m map[string]any
	json.Unmarshal(e.Data.Settings, &m)
	m[key] = v
	e.Data.Settings, _ = json.Marshal(m)
}

func TestHealthyMachinePasses(t *testing.T) {
	rs := Run(healthy(t))
	for _, r := range rs {
		if r.Status != Pass && r.Status != Skip {
			t.Errorf("%s: %s %q (remedy %q); want pass or skip", r.Check, r.Status, r.Message, r.Remedy)
		}
	}
	if Failed(rs, true) {
		t.Error("Failed(strict) on a healthy machine")
	}
}

// TestEachCheckBreaks breaks one thing per case and wants exactly that
// check to answer warn or fail, with a remedy.
func TestEachCheckBreaks(t *testing.T) {
	cases := []struct {
		check string
		want  Status
		brk   func(t *testing.T, e *Env)
	}{
		{"runs-as-root", Fail, func(t *testing.T, e *Env) {
			e.Proc = t.TempDir()
			e.AgentPID = 4242
			os.MkdirAll(filepath.Join(e.Proc, "4242"), 0o755)
			write(t, filepath.Join(e.Proc, "4242", "status"), "Name:\twarden\nUid:\t1000\t1000\t1000\t1000\n", 0o644)
		}},
		{"service", Fail, func(t *testing.T, e *Env) {
			yes := true
			e.Systemd = &yes
			e.Systemctl = func(args ...string) (string, error) { return "inactive\n", fmt.Errorf("exit status 3") }
		}},
		{"listeners-loopback", Fail, func(t *testing.T, e *Env) {
			ln, err := net.Listen("tcp", "0.0.0.0:0") // this process plays the agent
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			e.AgentPID = os.Getpid()
		}},
		{"tls-minimum", Fail, func(t *testing.T, e *Env) {
			srv := httptest.NewUnstartedServer(http.NotFoundHandler())
			srv.TLS = &tls.Config{MinVersion: tls.VersionTLS10}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			e.APIAddr = srv.Listener.Addr().String()
		}},
		{"path-security", Fail, func(t *testing.T, e *Env) {
			os.Chmod(filepath.Join(e.Root, "Plugins"), 0o777)
		}},
		{"path-security", Fail, func(t *testing.T, e *Env) {
			os.Chmod(e.Binary, 0o757)
		}},
		{"path-security", Fail, func(t *testing.T, e *Env) { // the front beside the core
			write(t, filepath.Join(filepath.Dir(e.Binary), "warden"), "#!/bin/sh\n", 0o757)
		}},
		{"allowed-hosts", Warn, func(t *testing.T, e *Env) { setSetting(t, e, "allowedHosts", []string{"*"}) }},
		{"allowed-hosts", Warn, func(t *testing.T, e *Env) {
			write(t, filepath.Join(e.Root, "appsettings.json"), `{"AllowedHosts": "*"}`, 0o600)
		}},
		{"alternative-signatures", Warn, func(t *testing.T, e *Env) {
			setSetting(t, e, "alternativeSignatures", []string{"ab12cd"})
		}},
		{"certificate-password", Fail, func(t *testing.T, e *Env) {
			setSetting(t, e, "certificate", map[string]any{"password": "hunter2"})
		}},
		{"certificate-password", Fail, func(t *testing.T, e *Env) {
			write(t, filepath.Join(e.Root, "appsettings.json"), `{"Certificate": {"CertPassword": "hunter2"}}`, 0o600)
		}},
		{"certificate-expiry", Fail, func(t *testing.T, e *Env) {
			writeCert(t, filepath.Join(e.Root, "certs", "server.pem"), time.Now().Add(-time.Hour))
		}},
		{"certificate-expiry", Warn, func(t *testing.T, e *Env) {
			writeCert(t, filepath.Join(e.Root, "certs", "server.pem"), time.Now().Add(48*time.Hour))
		}},
		{"log-level", Warn, func(t *testing.T, e *Env) { setSetting(t, e, "logging", map[string]any{"level": "Debug"}) }},
		{"audit-chain", Fail, func(t *testing.T, e *Env) { e.Data.AuditBroken = "event 7: hash mismatch" }},
		{"audit-forwarding", Warn, func(t *testing.T, e *Env) { setSetting(t, e, "audit", map[string]any{}) }},
		{"audit-forwarding", Warn, func(t *testing.T, e *Env) {
			since := time.Now().Add(-time.Hour)
			e.Data.Forward = []audit.ForwardStatus{{Target: "syslog:siem.example:6514", Alerted: true, DownSince: &since, Lag: 42, LastError: "connection refused"}}
		}},
		{"backend-registration", Fail, func(t *testing.T, e *Env) {
			setSetting(t, e, "backend", map[string]any{"url": "https://backend.example/v1"})
			no := false
			e.Data.Registered = &no
		}},
		{"sudoers", Fail, func(t *testing.T, e *Env) { write(t, e.Sudoers, "root ALL=(ALL:ALL) ALL\n", 0o440) }},
		{"sudoers", Fail, func(t *testing.T, e *Env) {
			dir := e.settingsField("enforcement", "sudoersDir").(string)
			write(t, filepath.Join(dir, "warden-g1"), "alice ALL=(root) /usr/bin/apt\n", 0o440)
			e.Data.Grants = []Grant{{ID: "g1", ExpiresAt: time.Now().Add(-time.Minute)}}
		}},
		{"admin-groups", Fail, func(t *testing.T, e *Env) {
			write(t, e.GroupFile, "root:x:0:\nsudo:x:27:breakglass,mallory\n", 0o644)
		}},
		{"clock", Warn, func(t *testing.T, e *Env) { e.Unsynced = func() (bool, error) { return true, nil } }},
		{"application-control", Fail, func(t *testing.T, e *Env) { // the agent is not root
			e.Data.Policies = append(e.Data.Policies, json.RawMessage(`{"type": "ApplicationControl", "status": "enforce"}`))
			e.Agent = noAPI{}
		}},
		{"application-control", Fail, func(t *testing.T, e *Env) { // it could not mark the filesystems
			setSetting(t, e, "applicationControl", map[string]any{"default": "deny"})
			e.Agent, e.Data.AppControl = noAPI{}, &AppControl{Active: false}
		}},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.check] = true
		t.Run(c.check, func(t *testing.T) {
			e := healthy(t)
			c.brk(t, e)
			rs := Run(e)
			r := result(rs, c.check)
			if r.Status != c.want || r.Remedy == "" {
				t.Fatalf("%s: got %s %q remedy %q; want %s with a remedy", c.check, r.Status, r.Message, r.Remedy, c.want)
			}
			if Failed(rs, false) != (c.want == Fail) || !Failed(rs, true) {
				t.Errorf("Failed = %v, strict %v; want %v, true", Failed(rs, false), Failed(rs, true), c.want == Fail)
			}
		})
	}
	for _, c := range checks {
		if !seen[c.name] {
			t.Errorf("check %s is never broken by this test", c.name)
		}
	}
}

// TestLiveAgent runs doctor against a real agent, up and then down: the
// live checks pass while it runs, the store checks after it stopped.
func TestLiveAgent(t *testing.T) {
	e := healthy(t)
	root := e.Root
	info, stop := agenttest.Start(t, root)
	up := *e
	up.Data = Data{}
	up.AgentPID, up.APIAddr, up.Binary = os.Getpid(), info.API, e.Binary
	up.Agent = adminAPI(t, root, info)
	up.GatherFromAgent()
	rs := Run(&up)
	if os.Geteuid() == 0 && up.Data.AppControl == nil {
		t.Error("agent up as root: no applicationControl gathered from its status")
	}
	for _, check := range []string{"runs-as-root", "listeners-loopback", "tls-minimum", "audit-chain", "path-security", "certificate-expiry"} {
		if r := result(rs, check); r.Status != Pass {
			t.Errorf("agent up: %s = %s %q %q; want pass", check, r.Status, r.Message, r.Remedy)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	down := *e
	down.Data = Data{}
	if err := down.GatherFromStore(); err != nil {
		t.Fatal(err)
	}
	rs = Run(&down)
	if r := result(rs, "audit-chain"); r.Status != Pass || down.Data.AuditEvents == 0 {
		t.Errorf("agent down: audit-chain = %s %q; want pass over the stored events", r.Status, r.Message)
	}
	if r := result(rs, "listeners-loopback"); r.Status != Skip {
		t.Errorf("agent down: listeners = %s; want skip", r.Status)
	}
}

// noAPI is an agent that answers nothing: the checks that judge
// gathered data only need to know one runs.
type noAPI struct{}

func (noAPI) Get(string, any) error { return errors.New("not asked in this test") }

type httpAPI struct {
	c    *http.Client
	base string
}

func (h httpAPI) Get(path string, out any) error {
	req, _ := http.NewRequest("GET", h.base+path, nil)
	req.Host = "localhost"
	resp, err := h.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func adminAPI(t *testing.T, root string, info agent.Info) API {
	t.Helper()
	certs := filepath.Join(root, "certs")
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "admin.pem"), filepath.Join(certs, "admin-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := os.ReadFile(info.CA)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost"}}}
	return httpAPI{c: c, base: "https://" + info.API}
}

func TestParseProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:1AE9":                         "127.0.0.1:6889",
		"00000000:0050":                         "0.0.0.0:80",
		"00000000000000000000000001000000:1AE8": "[::1]:6888",
		"0000000000000000FFFF00000100007F:1AE9": "127.0.0.1:6889",
	} {
		got, err := parseProcAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("parseProcAddr(%s) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := parseProcAddr("zz:1"); err == nil {
		t.Error("parseProcAddr(zz:1): no error")
	}
}

func TestAppControlRunning(t *testing.T) {
	e := healthy(t)
	e.Data.Policies = append(e.Data.Policies, json.RawMessage(`{"type": "ApplicationControl", "status": "monitor"}`),
		json.RawMessage(`{"type": "ApplicationControl", "status": "off"}`))
	e.Agent, e.Data.AppControl = noAPI{}, &AppControl{Active: true, Mounts: []string{"/"}, Events: 7, IgnoreMarks: 3}
	r := result(Run(e), "application-control")
	if r.Status != Pass || !strings.Contains(r.Message, "1 ApplicationControl policies") || !strings.Contains(r.Message, "3 programs left to the kernel") {
		t.Errorf("got %s %q; want pass naming 1 policy in force and 3 ignore marks", r.Status, r.Message)
	}
}
