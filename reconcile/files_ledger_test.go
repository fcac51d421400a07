package reconcile

import (
	"os"
	"testing"

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
	e.waitFor("ledger saved", func() bool {
		var rec ledgerRecord
		ok, err := e.store.Get(state.Status, ledgerKey, &rec)
		must(t, err)
		if !ok {
			return false
		}
		written, err := decodeLedger(rec.Written)
		must(t, err)
		_, saved := written["policies/deny-netcat.json"]
		return saved
	})
}

// Many files written at once are made durable with one syncfs before the
// ledger names them (200 here, over syncOneByOne): the ledger is saved
// with all of them and nothing is left to sync.
func TestLedgerSavedAfterManyWrites(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	docs := policies(t, 200)
	e.apply(docs...)
	e.waitFor("ledger saved with every file", func() bool {
		var rec ledgerRecord
		ok, err := e.store.Get(state.Status, ledgerKey, &rec)
		must(t, err)
		if !ok {
			return false
		}
		written, err := decodeLedger(rec.Written)
		must(t, err)
		for _, d := range docs {
			if _, saved := written["policies/"+d.ID+".json"]; !saved {
				return false
			}
		}
		return true
	})
	f := e.m.files
	f.led.mu.Lock()
	defer f.led.mu.Unlock()
	if n := len(f.led.unsynced); n != 0 {
		t.Errorf("%d files left to sync after the ledger was saved", n)
	}
}
