package elevate_test

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"warden/agent"
	"warden/agent/agenttest"
	"warden/audit"
	"warden/state"
	"warden/testuser"
)

// wardenBin is the real binary the tests drive as their users.
var wardenBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		// The unit tests run; the end-to-end ones skip (startAgent).
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "warden-elevate-bin-")
	if err != nil {
		panic(err)
	}
	os.Chmod(dir, 0o755)
	// Installed as it ships: the small front as warden (it runs
	// `warden elevate` itself) and the full CLI beside it as warden-core
	// (every other command, the agent included, is exec'd there).
	wardenBin = filepath.Join(dir, "warden")
	for bin, pkg := range map[string]string{wardenBin: "warden/cmd/front", filepath.Join(dir, "warden-core"): "warden/cmd/warden"} {
		cmd := exec.Command("go", "build", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("go build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testAgent is a real agent on a fresh root that the test users can reach.
type testAgent struct {
	root string
	info agent.Info
	api  *http.Client
	stop func() // stops the agent (once; the test's cleanup calls it too)
}

// openDir is a t.TempDir() that other users may traverse (the socket's
// folder must be reachable for them).
func openDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for p := d; p != "/" && p != os.TempDir(); p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	return d
}

func startAgent(t *testing.T) *testAgent {
	t.Helper()
	if wardenBin == "" {
		t.Skip("end-to-end: needs root (creates users, runs an agent as root)")
	}
	root := filepath.Join(openDir(t), "root")
	info, stopAgent := agenttest.Start(t, root)
	stop := func() {
		if err := stopAgent(); err != nil {
			t.Errorf("agent: %v", err)
		}
	}
	return &testAgent{root: root, info: info, api: adminHTTP(t, root), stop: stop}
}

func adminHTTP(t *testing.T, root string) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(root, "certs", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(filepath.Join(root, "certs", "admin.pem"), filepath.Join(root, "certs", "admin-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: "localhost"}}}
}

func (a *testAgent) call(t *testing.T, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, "https://"+a.info.API+path, strings.NewReader(body))
	req.Host = "localhost"
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.api.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data
}

// policy applies a Policy document (spec given as JSON) and waits until the
// engine decides with it.
func (a *testAgent) policy(t *testing.T, id, spec string) {
	t.Helper()
	a.put(t, "Policy", id, spec)
	var s struct {
		Filters struct {
			Applications []struct{ Path string }
			Folders      []string
		}
	}
	json.Unmarshal([]byte(spec), &s)
	probe := `{"user":"wdn-probe","groups":["wdn-probe"],"action":"elevate","application":{"path":"/nonexistent/probe"}}`
	if len(s.Filters.Applications) > 0 {
		probe = fmt.Sprintf(`{"user":"wdn-probe","groups":["wdn-probe"],"action":"elevate","application":{"path":%q}}`,
			strings.Replace(s.Filters.Applications[0].Path, "*", "x", -1))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, body := a.call(t, "POST", "/api/v1/evaluate?explain=true", probe)
		if bytes.Contains(body, []byte(`"`+id+`"`)) || len(s.Filters.Applications) == 0 {
			time.Sleep(300 * time.Millisecond)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy %s not in force after 10 s: %s", id, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *testAgent) put(t *testing.T, kind, id, spec string) {
	t.Helper()
	doc := fmt.Sprintf(`{"kind":%q,"id":%q,"spec":%s}`, kind, id, spec)
	if code, body := a.call(t, "PUT", "/api/v1/desired/"+kind+"/"+id, doc); code != 200 {
		t.Fatalf("PUT %s/%s = %d %s", kind, id, code, body)
	}
}

// events returns the stored audit events of type typ.
func (a *testAgent) events(t *testing.T, typ string) []audit.Event {
	t.Helper()
	code, body := a.call(t, "GET", "/api/v1/audit?limit=1000&type="+typ, "")
	if code != 200 {
		t.Fatalf("GET audit = %d %s", code, body)
	}
	var out struct{ Events []audit.Event }
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out.Events
}

// waitEvent waits for an event of typ that ok accepts.
func (a *testAgent) waitEvent(t *testing.T, typ string, ok func(audit.Event) bool) audit.Event {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, e := range a.events(t, typ) {
			if ok(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no matching %s event within 10 s; have %d of that type", typ, len(a.events(t, typ)))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// testUser is a real account made for one test.
type testUser struct{ testuser.User }

// newUser creates wdn-elevate-<suffix> (in the given extra groups, made
// for the test) and removes it after the test.
func newUser(t *testing.T, suffix string, groups ...string) testUser {
	t.Helper()
	return testUser{testuser.New(t, "wdn-elevate-"+suffix, testuser.Options{Groups: groups})}
}

// as is a command that runs as u, with its supplementary groups.
func (u testUser) as(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/", "LANG=C.UTF-8", "TERM=dumb"}
	return cmd
}

// warden runs the real binary as u with --root, returning stdout, stderr
// and the exit code.
func (a *testAgent) warden(t *testing.T, u testUser, stdin string, args ...string) (string, string, int) {
	t.Helper()
	return a.run(t, wardenBin, u, stdin, args...)
}

// run is warden with another executable (warden-core, say).
func (a *testAgent) run(t *testing.T, bin string, u testUser, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := u.as(bin, append([]string{"--root", a.root}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// grants lists the grants in force.
func (a *testAgent) grants(t *testing.T) []state.Grant {
	t.Helper()
	code, body := a.call(t, "GET", "/api/v1/grants", "")
	if code != 200 {
		t.Fatalf("GET grants = %d %s", code, body)
	}
	var out struct{ Grants []state.Grant }
	json.Unmarshal(body, &out)
	return out.Grants
}
