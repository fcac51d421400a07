package reconcile

import (
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/state"
)

// A materialized file deleted while the agent is down is drift at the next
// start (detected, put back, corrected), not a quiet first write.
func TestDeletedWhileDownIsDrift(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	rel := e.denyNetcat()
	want := readFile(e.path(rel))
	e.halt()

	must(t, os.Remove(e.path(rel)))
	e.restart()
	e.waitFor("restored", func() bool { return readFile(e.path(rel)) == want })
	e.waitQuiet()
	if !e.hasDrift("File", rel, "exists", state.DriftCorrected) {
		t.Errorf("no corrected drift for %s deleted while down; have %+v", rel, e.drift())
	}
	if n := len(e.events(audit.DriftDetected)); n != 1 {
		t.Errorf("DRIFT_DETECTED: got %d, want 1", n)
	}
}

// Desired state that changed while the agent was down is applied at start
// without drift: a file that still holds what the agent wrote for the older
// generation is updated, and one whose document went away is removed.
func TestGenerationChangedWhileDownIsNotDrift(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	e.apply(append(validated(t, policyJSON("deny-netcat", 100)), validated(t, policyJSON("old", 1))...)...)
	e.waitFor("materialized", func() bool { return readFile(e.path("policies/old.json")) != "" })
	e.waitQuiet()
	e.halt()

	e.apply(validated(t, policyJSON("deny-netcat", 200))...)
	e.restart()
	e.waitFor("old removed", func() bool { _, err := os.Lstat(e.path("policies/old.json")); return os.IsNotExist(err) })
	e.waitQuiet()
	if got, want := readFile(e.path("policies/deny-netcat.json")), string(validated(t, policyJSON("deny-netcat", 200))[0].Raw); got != want {
		t.Errorf("deny-netcat.json not updated:\n%s", got)
	}
	if evs := e.events(audit.DriftDetected); len(evs) != 0 {
		t.Errorf("drift for a generation changed while down: %+v", e.drift())
	}
}

// The ledger is saved while the agent runs (a moment after a change), not
// only at a clean stop, so that a killed agent keeps most of it.
func TestLedgerSavedWhileRunning(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	e.apply(validated(t, policyJSON("deny-netcat", 100))...)
	e.waitFor("ledger saved", func() bool { return ledgerNames(t, e, "policies/deny-netcat.json") })
}

// ledgerNames reports whether the ledger saved in the store names every
// one of paths as written.
func ledgerNames(t *testing.T, e *env, paths ...string) bool {
	t.Helper()
	var rec ledgerRecord
	ok, err := e.store.Get(state.Status, ledgerKey, &rec)
	must(t, err)
	if !ok {
		return false
	}
	written, err := decodeLedger(rec.Written)
	must(t, err)
	for _, p := range paths {
		if _, ok := written[p]; !ok {
			return false
		}
	}
	return true
}

// Many files written at once are made durable with one syncfs before the
// ledger names them (200 here, over syncOneByOne); a few are fsynced one
// by one, without it. A syncfs that fails leaves them to be synced at the
// next save, and the ledger does not name them until one succeeds.
func TestLedgerSyncsManyWritesAtOnce(t *testing.T) {
	var calls, failing atomic.Int32
	failing.Store(1)
	was := syncFS
	syncFS = func(fd int) error {
		calls.Add(1)
		if failing.Load() == 1 {
			return unix.EIO
		}
		return was(fd)
	}
	t.Cleanup(func() { syncFS = was })

	e := newEnv(t, nil)
	e.start()
	saved := func(paths ...string) bool { return ledgerNames(t, e, paths...) }
	docs := policies(t, 200)
	var paths []string
	for _, d := range docs {
		paths = append(paths, "policies/"+d.ID+".json")
	}
	e.apply(docs...)
	e.waitFor("a failed syncfs", func() bool { return calls.Load() >= 1 })
	e.waitQuiet()
	if saved(paths[0]) {
		t.Fatal("the ledger names files whose syncfs failed")
	}
	failing.Store(0)
	// Any change makes the next save: it syncs what was left too.
	e.apply(append(docs, validated(t, policyJSON("one-more", 7))...)...)
	e.waitFor("ledger saved with every file", func() bool { return saved(append(paths, "policies/one-more.json")...) })
	f := e.m.files
	f.led.mu.Lock()
	left := len(f.led.unsynced)
	f.led.mu.Unlock()
	if left != 0 {
		t.Errorf("%d files left to sync after the ledger was saved", left)
	}

	// A few files: fsync each, no syncfs.
	before := calls.Load()
	e.apply(append(docs, validated(t, policyJSON("one-more", 8))...)...)
	e.waitFor("the changed file in the ledger", func() bool {
		return saved("policies/one-more.json") && readFile(e.path("policies/one-more.json")) == string(policyJSON("one-more", 8))
	})
	e.waitQuiet()
	time.Sleep(ledgerDelay + 200*time.Millisecond)
	if n := calls.Load() - before; n != 0 {
		t.Errorf("syncfs called %d times for one written file", n)
	}
}
