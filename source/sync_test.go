package source_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"warden/audit"
	"warden/source"
	"warden/source/backend"
	"warden/state"
)

const policy = `{"kind": "Policy", "id": "%s", "spec": {"name": "p", "type": "PrivilegeElevation",
 "status": "enforce", "priority": 1, "controls": ["deny"], "filters": {"users": ["*"]}}}`

// buildTo signs a folder with one policy per id into path, atomically.
func buildTo(t testing.TB, keyDir, path string, version int64, ids ...string) {
	t.Helper()
	buildWith(t, keyDir, path, version, "", ids...)
}

// backendFixture makes the folders of a backend test: a signing key pair in
// keys (its public key trusted by the agent root as backend.pub), and a
// backend folder accepting token for group "lab", with an empty bundles/.
// It returns the three folders and lab's bundle path.
func backendFixture(t *testing.T, token string) (keys, root, bdir, bundle string) {
	t.Helper()
	keys, root, bdir = t.TempDir(), t.TempDir(), t.TempDir()
	if _, err := source.WriteKeyPair(keys); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "trust"), 0o700)
	pub, _ := os.ReadFile(filepath.Join(keys, source.PublicKeyFile))
	os.WriteFile(filepath.Join(root, "trust", "backend.pub"), pub, 0o600)
	os.WriteFile(filepath.Join(bdir, "tokens.json"), []byte(`[{"token": "`+token+`", "group": "lab"}]`), 0o600)
	bundle = filepath.Join(bdir, "bundles", "lab.tar.gz")
	os.MkdirAll(filepath.Dir(bundle), 0o700)
	return keys, root, bdir, bundle
}

// backendProc is the reference backend on a real loopback listener that
// can be stopped and started again on the same address.
type backendProc struct {
	t      testing.TB
	dir    string
	addr   string
	srv    *http.Server
	server *backend.Server
	served sync.WaitGroup
	codes  sync.Map // status code -> *atomic.Int64
}

func (b *backendProc) start() {
	b.t.Helper()
	s, err := backend.New(b.dir, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	b.server = s
	addr := b.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		b.t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	h := s.Handler("/v1")
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: 200}
		h.ServeHTTP(rec, r)
		n, _ := b.codes.LoadOrStore(rec.code, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	})}
	b.served.Add(1)
	go func() { defer b.served.Done(); b.srv.Serve(ln) }()
}

func (b *backendProc) stop() {
	b.srv.Close()
	b.served.Wait()
	b.server.Close()
}

func (b *backendProc) count(code int) int64 {
	n, ok := b.codes.Load(code)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) { r.code = code; r.ResponseWriter.WriteHeader(code) }

type agentProc struct {
	root  string
	store *state.Store
	aw    *audit.Writer
	p     *source.Pipeline
}

func openAgent(t testing.TB, root string) *agentProc {
	t.Helper()
	st, err := state.Open(filepath.Join(root, "KeeperStorage"), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	aw, err := audit.NewWriter(st, audit.Options{Machine: "ws-17"})
	if err != nil {
		t.Fatal(err)
	}
	return &agentProc{root: root, store: st, aw: aw, p: source.NewPipeline(st, aw, filepath.Join(root, "trust"))}
}

func (a *agentProc) close() { a.aw.Close(); a.store.Close() }

// waitVersion waits (on store notifications, not on a clock) until the
// applied bundle version is v.
func waitVersion(t *testing.T, st *state.Store, v int64) {
	t.Helper()
	gens, cancel := st.Subscribe()
	defer cancel()
	deadline := time.After(30 * time.Second)
	for st.Current().Meta.BundleVersion != v {
		select {
		case <-gens:
		case <-deadline:
			t.Fatalf("bundle version %d never applied (at %d)", v, st.Current().Meta.BundleVersion)
		}
	}
}

// uploadedSeqs reads the backend's NDJSON for agent id.
func uploadedSeqs(t *testing.T, dir, id string) []uint64 {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "audit", id+".ndjson"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []uint64
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e audit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("bad NDJSON line %q: %v", sc.Text(), err)
		}
		out = append(out, e.Seq)
	}
	return out
}

// checkComplete says every stored event was uploaded exactly once, in order.
func checkComplete(t *testing.T, a *agentProc, dir, id string) {
	t.Helper()
	last, ok, err := a.store.LastAudit()
	if err != nil || !ok {
		t.Fatalf("no audit events: %v", err)
	}
	got := uploadedSeqs(t, dir, id)
	if uint64(len(got)) != last.Seq {
		t.Fatalf("backend holds %d events, agent stored %d", len(got), last.Seq)
	}
	for i, seq := range got {
		if seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d: a gap or a duplicate", i, seq)
		}
	}
}

func TestBackendLoop(t *testing.T) {
	ctx := context.Background()
	keys, root, bdir, bundle := backendFixture(t, "enrol-s3cret")

	be := &backendProc{t: t, dir: bdir}
	be.start()
	defer be.stop()
	url := "http://" + be.addr + "/v1"
	a := openAgent(t, root)

	// Registration: a wrong token is refused; the right one is kept in the
	// encrypted store and audited without the secret.
	if _, err := source.Register(ctx, a.store, a.aw, source.RegisterOptions{URL: url, Token: "wrong"}); err == nil {
		t.Fatal("registered with a wrong token")
	}
	reg, err := source.Register(ctx, a.store, a.aw, source.RegisterOptions{URL: url, Token: "enrol-s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if reg.Group != "lab" || reg.AgentID == "" {
		t.Fatalf("registration %+v", reg)
	}
	if _, err := source.Register(ctx, a.store, a.aw, source.RegisterOptions{URL: url, Token: "enrol-s3cret"}); !errors.Is(err, source.ErrRegistered) {
		t.Fatalf("second registration: got %v, want ErrRegistered", err)
	}
	evs, _, _ := audit.Query(a.store, audit.Filter{Types: []string{audit.AgentRegistered}})
	if len(evs) != 1 || strings.Contains(string(evs[0].Raw), "enrol-s3cret") || strings.Contains(string(evs[0].Raw), reg.Credential) {
		t.Fatalf("AGENT_REGISTERED events: %d, or one holds a secret: %v", len(evs), evs)
	}

	s := source.NewSync(a.store, a.p, root, nil)
	s.SetTimings(20*time.Millisecond, 5*time.Millisecond, 50*time.Millisecond, 20*time.Millisecond, 7)
	s.SetLongPoll(0) // interval polling here; longpoll_test.go has the other
	if res, err := s.Poll(ctx); err != nil || res.Status != "none" {
		t.Fatalf("poll with no bundle: %+v %v", res, err)
	}
	// First bundle, then an unchanged poll answered 304.
	buildTo(t, keys, bundle, 1, "a", "b")
	if res, err := s.Poll(ctx); err != nil || res.Status != "applied" || res.Meta.BundleVersion != 1 {
		t.Fatalf("first poll: %+v %v", res, err)
	}
	if res, err := s.Poll(ctx); err != nil || res.Status != "unchanged" || be.count(http.StatusNotModified) != 1 {
		t.Fatalf("unchanged poll: %+v %v, %d answered 304", res, err, be.count(http.StatusNotModified))
	}
	// A new version applies.
	buildTo(t, keys, bundle, 2, "a", "b", "c")
	if res, err := s.Poll(ctx); err != nil || res.Status != "applied" || res.Meta.Documents != 3 {
		t.Fatalf("new version: %+v %v", res, err)
	}

	// The loop: backend down for a while, a new version published, backend
	// back; the agent recovers on its own and uploads all audit events.
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Run(runCtx) }()
	be.stop()
	if _, err := s.Poll(ctx); err == nil {
		t.Fatal("poll with the backend down did not fail")
	}
	buildTo(t, keys, bundle, 3, "a", "c", "d")
	be.start()
	waitVersion(t, a.store, 3)
	a.aw.Write(ctx, audit.Event{Type: audit.AdminAction, Component: "test"})
	waitUploaded(t, a, bdir, reg.AgentID)
	stopRun()
	<-done
	checkComplete(t, a, bdir, reg.AgentID)

	// Agent restart: the cursor survives, new events follow, none twice.
	a.close()
	a = openAgent(t, root)
	defer a.close()
	a.aw.Write(ctx, audit.Event{Type: audit.AdminAction, Component: "test"})
	s = source.NewSync(a.store, a.p, root, nil)
	s.SetTimings(20*time.Millisecond, 5*time.Millisecond, 50*time.Millisecond, 20*time.Millisecond, 7)
	if res, err := s.Poll(ctx); err != nil || res.Status != "unchanged" {
		t.Fatalf("poll after restart: %+v %v", res, err)
	}
	if n := len(mustQuery(t, a.store, audit.BundleRejected)); n != 0 {
		t.Errorf("%d BUNDLE_REJECTED events after restart, want 0", n)
	}
	if _, err := s.UploadAudit(ctx); err != nil {
		t.Fatal(err)
	}
	checkComplete(t, a, bdir, reg.AgentID)
	// A crash between the backend storing a batch and the agent keeping its
	// acknowledgement: the resent events are not stored twice.
	if err := a.store.Put(state.Status, "backend-audit-upload/"+reg.AgentID, map[string]any{"acked": 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UploadAudit(ctx); err != nil {
		t.Fatal(err)
	}
	checkComplete(t, a, bdir, reg.AgentID)
	// And a backend restart keeps what it holds.
	be.stop()
	be.start()
	a.aw.Write(ctx, audit.Event{Type: audit.AdminAction, Component: "test"})
	if _, err := s.UploadAudit(ctx); err != nil {
		t.Fatal(err)
	}
	checkComplete(t, a, bdir, reg.AgentID)
}

func waitUploaded(t *testing.T, a *agentProc, dir, id string) {
	t.Helper()
	last, _, _ := a.store.LastAudit()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := uploadedSeqs(t, dir, id)
		if len(got) > 0 && got[len(got)-1] >= last.Seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend holds %d events, want up to seq %d", len(got), last.Seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustQuery(t *testing.T, st *state.Store, typ string) []audit.Event {
	t.Helper()
	evs, _, err := audit.Query(st, audit.Filter{Types: []string{typ}})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// BenchmarkPollUnchanged is one poll answered 304. cpu-us/op is the whole
// process (agent and the in-process reference backend together), so it
// bounds the agent's share from above.
func BenchmarkPollUnchanged(b *testing.B) {
	ctx := context.Background()
	keys, root, bdir := b.TempDir(), b.TempDir(), b.TempDir()
	source.WriteKeyPair(keys)
	os.MkdirAll(filepath.Join(root, "trust"), 0o700)
	pub, _ := os.ReadFile(filepath.Join(keys, source.PublicKeyFile))
	os.WriteFile(filepath.Join(root, "trust", "backend.pub"), pub, 0o600)
	os.WriteFile(filepath.Join(bdir, "tokens.json"), []byte(`[{"token": "t", "group": "lab"}]`), 0o600)
	os.MkdirAll(filepath.Join(bdir, "bundles"), 0o700)

	buildTo(b, keys, filepath.Join(bdir, "bundles", "lab.tar.gz"), 1, "a", "b")
	be := &backendProc{t: b, dir: bdir}
	be.start()
	defer be.stop()
	a := openAgent(b, root)
	defer a.close()
	if _, err := source.Register(ctx, a.store, a.aw, source.RegisterOptions{URL: "http://" + be.addr + "/v1", Token: "t"}); err != nil {
		b.Fatal(err)
	}
	s := source.NewSync(a.store, a.p, root, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if res, err := s.Poll(ctx); err != nil || res.Status != "applied" {
		b.Fatal(res, err)
	}
	var before, after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if res, err := s.Poll(ctx); err != nil || res.Status != "unchanged" {
			b.Fatal(res, err)
		}
	}
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) / time.Duration(b.N)
	b.ReportMetric(float64(cpu.Microseconds()), "cpu-us/op")
}
