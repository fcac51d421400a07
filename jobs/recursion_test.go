package jobs

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"warden/audit"
	"warden/reconcile"
)

// TestDriftLoopDoesNotRecurse runs a real drift loop: the reconcile
// manager's permissions controller reports a loosened mode as
// DRIFT_DETECTED and puts it back; a job triggered by DriftDetected loosens
// a mode itself. Without the recursion guard every run would cause the
// drift that starts the next one, forever.
func TestDriftLoopDoesNotRecurse(t *testing.T) {
	h := newHarness(t, nil)
	marker := filepath.Join(h.root, "Jobs", "loop.marker")
	seed := filepath.Join(h.root, "Plugins", "seed")
	for _, p := range []string{marker, seed} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	h.apply(jobDoc("fixer", `{"trigger": {"events": ["DriftDetected"]}, "tasks": [
		{"command": "/bin/chmod", "args": ["0644", "`+marker+`"]}]}`))

	m, err := reconcile.NewManager(reconcile.Options{Root: h.root, Store: h.store, Audit: h.audit,
		ResyncInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	mdone := make(chan error, 1)
	go func() { mdone <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-mdone
	})
	// Let the manager materialize Jobs/fixer.json and settle before the
	// scheduler listens, so the only drift it sees is the test's and the job's.
	eventually(t, "the reconcile manager to settle", func() bool {
		if _, err := os.Stat(filepath.Join(h.root, "Jobs", "fixer.json")); err != nil {
			return false
		}
		for _, c := range m.Status() {
			if c.QueueDepth+c.Active+c.Waiting > 0 || c.Reconciles == 0 {
				return false
			}
		}
		return true
	})
	h.start()

	for round := 1; round <= 2; round++ {
		if err := os.Chmod(seed, 0o644); err != nil { // drift from outside
			t.Fatal(err)
		}
		h.waitRuns("fixer", round)
		eventually(t, "the job's own drift to reach the scheduler and be ignored", func() bool {
			return h.ignored("fixer", marker) >= round
		})
		eventually(t, "the permissions controller to restore the marker", func() bool {
			st, err := os.Stat(marker)
			return err == nil && st.Mode().Perm() == 0o600
		})
		if n := len(h.finished("fixer")); n != round || !h.idle("fixer") {
			t.Fatalf("round %d: %d runs, want %d: the job triggered itself", round, n, round)
		}
		h.clock.Advance(61 * time.Second) // past the cool-down: outside drift counts again
	}
	for _, r := range h.finished("fixer") {
		if r.Event != EventDriftDetected {
			t.Errorf("run %s fired by %s", r.ID, r.Event)
		}
	}
}

// ignored counts the DRIFT_DETECTED events about path the guard kept from
// starting job.
func (h *harness) ignored(job, path string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.seen {
		if s.job == job && s.typ == audit.DriftDetected && s.path == path && s.ignored != "" {
			n++
		}
	}
	return n
}

func TestGuardOwnFolder(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(jobDoc("self", `{"trigger": {"events": ["DriftDetected"], "eventCooldownSeconds": 0}, "tasks": [{"command": "/bin/true"}]}`))
	h.start()
	own := filepath.Join(h.root, "Jobs", "self", "out.txt")
	if _, err := h.audit.Write(context.Background(), audit.Event{Type: audit.DriftDetected, Component: "test",
		TargetInfo: &audit.TargetInfo{Kind: "Path", ID: "Jobs/self/out.txt", Path: own}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the event to be ignored", func() bool { return h.ignored("self", own) == 1 })
	if n := len(h.finished("self")); n != 0 {
		t.Errorf("%d runs from drift in the job's own folder, want 0", n)
	}
}
