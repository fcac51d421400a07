package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

// env is a real agent root in t.TempDir(): a bbolt store in KeeperStorage/,
// a real audit writer, a Manager with real fsnotify.
type env struct {
	t     testing.TB
	root  string
	store *state.Store
	aw    *audit.Writer
	reg   *prometheus.Registry
	m     *Manager
	opts  Options

	timeout time.Duration // waitFor's limit (20 s)

	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	counts map[string]int // reconciles by controller
	keys   map[string]int // reconciles by controller/key
}

func newEnv(t testing.TB, tune func(*Options)) *env {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "KeeperStorage"), 0o700); err != nil {
		t.Fatal(err)
	}
	st, err := state.Open(filepath.Join(root, "KeeperStorage"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	aw, err := audit.NewWriter(st, audit.Options{Machine: "test"})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: root, store: st, aw: aw, reg: prometheus.NewRegistry(),
		counts: map[string]int{}, keys: map[string]int{}}
	opts := Options{Root: root, Store: st, Audit: aw, Registry: e.reg,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		Listen:         Listen{API: "127.0.0.1:6889", Health: "127.0.0.1:6888", MQTT: "127.0.0.1:8675"},
		ResyncInterval: time.Hour, BackoffBase: time.Millisecond, BackoffMax: 50 * time.Millisecond, GiveUpAfter: 3}
	if os.Getenv("RECONCILE_TEST_LOG") != "" {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if tune != nil {
		tune(&opts)
	}
	e.opts = opts
	e.newManager()
	t.Cleanup(e.stop)
	return e
}

func (e *env) newManager() {
	e.t.Helper()
	var err error
	if e.m, err = NewManager(e.opts); err != nil {
		e.t.Fatal(err)
	}
	e.m.onProgress = func(c, k string, err error) {
		e.mu.Lock()
		e.counts[c]++
		e.keys[c+"/"+k]++
		e.mu.Unlock()
	}
}

// halt stops the reconciler and leaves the store open: the agent is down.
func (e *env) halt() {
	e.t.Helper()
	e.cancel()
	if err := <-e.done; err != nil {
		e.t.Errorf("Run: %v", err)
	}
	e.cancel = nil
}

// restart starts a new reconciler on the same root and store after halt,
// as a restarted agent does.
func (e *env) restart() {
	e.t.Helper()
	e.reg = prometheus.NewRegistry()
	e.opts.Registry = e.reg
	e.newManager()
	e.start()
}

func (e *env) start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- e.m.Run(ctx) }()
}

func (e *env) stop() {
	if e.cancel != nil {
		e.cancel()
		if err := <-e.done; err != nil {
			e.t.Errorf("Run: %v", err)
		}
		e.cancel = nil
	}
	if e.aw != nil {
		e.aw.Close()
		e.store.Close()
		e.aw = nil
	}
}

func (e *env) path(rel string) string { return filepath.Join(e.root, filepath.FromSlash(rel)) }

func (e *env) count(controller string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.counts[controller]
}

func (e *env) keyCount(controller, key string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.keys[controller+"/"+key]
}

func (e *env) total() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, c := range e.counts {
		n += c
	}
	return n
}

// waitFor waits (up to 20 s, generous for -race on a small machine) until
// cond holds. It asserts an outcome, never a speed.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	limit := e.timeout
	if limit == 0 {
		limit = 20 * time.Second
	}
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitQuiet waits until no controller has work and the drift book has
// stored everything.
func (e *env) waitQuiet() {
	e.t.Helper()
	e.waitFor("reconciler to go quiet", e.m.quiet)
}

func policyJSON(id string, priority int) []byte {
	return fmt.Appendf(nil, `{"kind": "Policy", "id": %q, "spec": {
  "name": "Block netcat", "type": "PrivilegeElevation", "status": "enforce",
  "priority": %d, "controls": ["deny"],
  "filters": {"users": ["*"], "machines": ["*"],
              "applications": [{"path": "/usr/bin/nc*"}]}}}`, id, priority)
}

// validated runs documents through schema.Validate (the real path).
func validated(t testing.TB, raws ...[]byte) []*schema.Document {
	t.Helper()
	var out []*schema.Document
	for i, raw := range raws {
		d, err := schema.Validate(fmt.Sprintf("doc%d.json", i), raw)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// policies builds n Policy documents through schema.Restore: the same
// Documents the store hands out, without n CUE evaluations.
func policies(t testing.TB, n int) []*schema.Document {
	t.Helper()
	out := make([]*schema.Document, n)
	for i := range out {
		id := fmt.Sprintf("p-%05d", i)
		raw := policyJSON(id, i%1000)
		var doc struct {
			Spec json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		d, err := schema.Restore(schema.KindPolicy, id, raw, doc.Spec)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = d
	}
	return out
}

func (e *env) apply(docs ...*schema.Document) {
	e.t.Helper()
	if _, err := e.store.ApplyGeneration(state.Apply{Source: "local", Docs: docs}); err != nil {
		e.t.Fatal(err)
	}
}

// denyNetcat is the one policy most tests need: it applies it, waits until
// its file is materialized and the reconciler is quiet, and returns the
// file's path relative to the root.
func (e *env) denyNetcat() string {
	e.t.Helper()
	const rel = "policies/deny-netcat.json"
	e.apply(validated(e.t, policyJSON("deny-netcat", 100))...)
	e.waitFor("materialized", func() bool { return readFile(e.path(rel)) != "" })
	e.waitQuiet()
	return rel
}

func (e *env) events(typ string) []audit.Event {
	e.t.Helper()
	var all []audit.Event
	var after uint64
	for {
		evs, next, err := audit.Query(e.store, audit.Filter{Types: []string{typ}, Limit: 10000, After: after})
		if err != nil {
			e.t.Fatal(err)
		}
		all = append(all, evs...)
		if next == "" || len(evs) == 0 {
			return all
		}
		after = evs[len(evs)-1].Seq
	}
}

func (e *env) drift() []state.DriftRecord {
	e.t.Helper()
	recs, err := e.store.DriftRecords()
	if err != nil {
		e.t.Fatal(err)
	}
	return recs
}

func (e *env) hasDrift(kind, id, field, st string) bool {
	for _, r := range e.drift() {
		if r.Kind == kind && r.Name == id && r.Field == field && r.State == st {
			return true
		}
	}
	return false
}

func mode(t testing.TB, path string) os.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		return 0
	}
	return fi.Mode().Perm() | fi.Mode()&(os.ModeSetuid|os.ModeSetgid|os.ModeSticky)
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
