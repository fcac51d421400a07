package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"warden/agent"
	"warden/audit"
	"warden/fulldisk"
	"warden/pki"
	"warden/state"
)

// faultAgent is one run of the real agent binary on root.
type faultAgent struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait returned (its only caller)
	out    *bytes.Buffer
	info   agent.Info
	c      *http.Client
}

// stop sends sig and waits for the agent to exit.
func (a *faultAgent) stop(sig syscall.Signal) {
	a.cmd.Process.Signal(sig)
	<-a.exited
}

// startFaultAgent starts `warden agent` on root and waits until it serves
// (its run/agent.json names its pid), or returns its one-line failure.
func startFaultAgent(t *testing.T, root string) (*faultAgent, string) {
	t.Helper()
	out := &bytes.Buffer{}
	cmd := exec.Command(wardenBin, "--root", root, "agent", "--listen-api", "127.0.0.1:0",
		"--listen-health", "127.0.0.1:0", "--listen-mqtt", "127.0.0.1:0", "--log-level", "error")
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case <-exited:
			return nil, out.String()
		case <-deadline:
			cmd.Process.Kill()
			t.Fatalf("agent did not start in 20 s:\n%s", out)
		case <-time.After(10 * time.Millisecond):
		}
		info, err := agent.ReadInfo(root)
		if err == nil && info.PID == cmd.Process.Pid {
			cfg, err := pki.ClientTLSConfig(filepath.Join(root, "certs"))
			if err != nil {
				t.Fatal(err)
			}
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
			return &faultAgent{cmd: cmd, exited: exited, out: out, info: info, c: c}, ""
		}
	}
}

func (a *faultAgent) call(method, path, body string) (int, string, error) {
	req, _ := http.NewRequest(method, "https://"+a.info.API+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// acked is what the agent acknowledged: evaluations answered 200 (by user
// name) and local changes answered 200 (by policy id).
type acked struct {
	mu      sync.Mutex
	evals   map[string]bool
	puts    map[string]bool
	refused int // 503 audit_unavailable answers
}

func (k *acked) add(m map[string]bool, key string) {
	k.mu.Lock()
	m[key] = true
	k.mu.Unlock()
}

// load runs audit-heavy load (evaluations) and local changes against a
// until stop closes; refused answers must be 503 audit_unavailable.
func load(t *testing.T, a *faultAgent, run int, k *acked, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if g == 0 && i%4 == 0 {
					id := fmt.Sprintf("p-%d-%d", run, i)
					doc := fmt.Sprintf(`{"kind": "Policy", "id": %q, "spec": {"name": "fault", "type": "PrivilegeElevation",
					 "status": "enforce", "priority": 100, "controls": ["deny"], "filters": {"applications": [{"path": "/usr/bin/nc"}]}}}`, id)
					if code, body, err := a.call("PUT", "/api/v1/desired/Policy/"+id, doc); err == nil {
						checkAnswer(t, code, body)
						if code == 200 {
							k.add(k.puts, id)
						}
					}
					continue
				}
				user := fmt.Sprintf("u-%d-%d-%d", run, g, i)
				code, body, err := a.call("POST", "/api/v1/evaluate",
					fmt.Sprintf(`{"user": %q, "machine": "ws-1", "action": "elevate", "application": {"path": "/usr/bin/apt"}}`, user))
				if err != nil {
					continue // killed meanwhile: not acknowledged
				}
				checkAnswer(t, code, body)
				if code == 200 {
					k.add(k.evals, user)
				} else {
					k.mu.Lock()
					k.refused++
					k.mu.Unlock()
				}
			}
		}(g)
	}
	return &wg
}

func checkAnswer(t *testing.T, code int, body string) {
	if code != 200 && !(code == 503 && strings.Contains(body, `"code":"audit_unavailable"`)) {
		t.Errorf("answer %d %s; want 200, or 503 audit_unavailable", code, body)
	}
}

// The end-to-end fault test: 50 kill -9s of the real agent during bundle
// applies and audit-heavy load, a full disk, a truncated and a bit-flipped
// database. Afterwards nothing acknowledged is missing from the store and
// the audit chain, every refusal was 503 audit_unavailable (the action did
// not happen), and every start failure is one clear line.
func TestFaultsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end fault test")
	}
	kills := 50
	fs := fulldisk.Mount(t, 256<<20) // skips when not root
	root := filepath.Join(fs.Dir, "root")
	keys := filepath.Join(t.TempDir(), "keys")
	if out, code := warden(t, "bundle", "keygen", "--out", keys); code != 0 {
		t.Fatalf("keygen: %s", out)
	}
	docs := filepath.Join(t.TempDir(), "docs")
	os.MkdirAll(filepath.Join(docs, "policies"), 0o755)
	os.WriteFile(filepath.Join(docs, "policies", "dev-tools.json"), []byte(policyDoc), 0o644)
	trustKey(t, root, keys)
	bundle := func(v int) string {
		// Built on the same filesystem as the inbox: the rename into it
		// is the documented atomic delivery.
		os.MkdirAll(filepath.Join(fs.Dir, "stage"), 0o700)
		p := filepath.Join(fs.Dir, "stage", fmt.Sprintf("b%d.tar.gz", v))
		if out, code := warden(t, "bundle", "build", "--in", docs, "--key", filepath.Join(keys, "bundle.key"),
			"--version", fmt.Sprint(v), "--out", p); code != 0 {
			t.Fatalf("bundle build: %s", out)
		}
		return p
	}

	k := &acked{evals: map[string]bool{}, puts: map[string]bool{}}
	maxVersion := int64(0)
	for run := 0; run < kills; run++ {
		a, fail := startFaultAgent(t, root)
		if a == nil {
			t.Fatalf("start %d after a kill -9 failed: %s", run, fail)
		}
		var st struct{ BundleVersion int64 }
		_, body, _ := a.call("GET", "/api/v1/status", "")
		json.Unmarshal([]byte(body), &st)
		if st.BundleVersion < maxVersion {
			t.Fatalf("run %d: bundle version %d after %d was applied: a committed apply was lost", run, st.BundleVersion, maxVersion)
		}
		maxVersion = st.BundleVersion
		stop := make(chan struct{})
		wg := load(t, a, run, k, stop)
		if run%2 == 0 { // an apply in flight at the kill, or just done
			if err := os.Rename(bundle(run+1), filepath.Join(root, "inbox", fmt.Sprintf("b%d.tar.gz", run+1))); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Millisecond)
		a.stop(syscall.SIGKILL)
		close(stop)
		wg.Wait()
	}

	// A full disk: refusals are 503 audit_unavailable, the rest acknowledged.
	a, fail := startFaultAgent(t, root)
	if a == nil {
		t.Fatalf("start after the kills: %s", fail)
	}
	fs.Fill()
	stop := make(chan struct{})
	wg := load(t, a, kills, k, stop)
	time.Sleep(time.Second)
	fs.Free()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	a.stop(syscall.SIGTERM)
	if k.refused == 0 {
		t.Errorf("no evaluation was refused on the full disk")
	}

	// Nothing acknowledged is missing, and the chain is whole.
	if out, code := warden(t, "--root", root, "audit", "verify"); code != 0 {
		t.Fatalf("audit verify after the faults: %s", out)
	}
	st, err := state.Open(filepath.Join(root, "KeeperStorage"), state.Options{MustExist: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	applied := map[string]bool{}
	for after := uint64(0); ; {
		evs, next, err := audit.Query(st, audit.Filter{After: after, Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Type == audit.PolicyEvaluation && e.UserInfo != nil {
				seen[e.UserInfo.User] = true
			}
			if e.Type == audit.AdminAction && e.TargetInfo != nil {
				applied[e.TargetInfo.ID] = true
			}
			after = e.Seq
		}
		if next == "" {
			break
		}
	}
	cur := st.Current()
	st.Close()
	if cur.Meta.BundleVersion == 0 {
		t.Errorf("no bundle was applied during the kills")
	}
	for u := range k.evals {
		if !seen[u] {
			t.Errorf("evaluation for %s was answered but its POLICY_EVALUATION is missing", u)
		}
	}
	// A bundle replaces the whole desired state, so a local change made
	// before the last bundle is gone from it by design; those made in the
	// last run (no bundle) must still be there. All must be audited.
	last := fmt.Sprintf("p-%d-", kills)
	for id := range k.puts {
		if !applied[id] || strings.HasPrefix(id, last) && cur.Get("Policy", id) == nil {
			t.Errorf("local change %s was acknowledged but is missing (audited %v)", id, applied[id])
		}
	}
	t.Logf("%d kill -9s, %d evaluations and %d changes acknowledged, %d evaluations refused on the full disk, bundle version %d",
		kills, len(k.evals), len(k.puts), k.refused, cur.Meta.BundleVersion)

	// A truncated and a bit-flipped database: one clear line, never a panic.
	db := filepath.Join(root, "KeeperStorage", state.DBFile)
	good, _ := os.ReadFile(db)
	for name, damage := range map[string]func([]byte) []byte{
		"truncated": func(b []byte) []byte { return b[:len(b)/3] },
		"bit-flipped": func(b []byte) []byte {
			// One bit of the page-type flags of every 8th page, so that
			// pages in use are hit, not only free ones.
			b = append([]byte(nil), b...)
			for off := 2 * 4096; off+8 < len(b); off += 8 * 4096 {
				b[off+8] ^= 0x04
			}
			return b
		},
	} {
		os.WriteFile(db, damage(good), 0o600)
		a, out := startFaultAgent(t, root)
		if a != nil {
			// Only free pages were hit: the store is whole.
			a.stop(syscall.SIGTERM)
			if out, code := warden(t, "--root", root, "audit", "verify"); code != 0 && strings.Count(strings.TrimSpace(out), "\n") > 0 {
				t.Errorf("%s: verify output is not one line:\n%s", name, out)
			}
			continue
		}
		t.Logf("%s database: %s", name, strings.TrimSpace(out))
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || strings.Contains(out, "panic") ||
			!strings.Contains(out, "restore") {
			t.Errorf("%s database: start failure is not one clear line naming the remedy:\n%s", name, out)
		}
		os.WriteFile(db, good, 0o600)
	}
}
