package audit_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"warden/audit"
	"warden/fulldisk"
	"warden/schema"
	"warden/state"
)

// On a full disk nothing audited happens: Write fails with ErrUnavailable,
// the writer reports itself unhealthy, a generation is not committed
// without its events; once space returns the same writer works again.
func TestFullDiskFailsClosedAndRecovers(t *testing.T) {
	fs := fulldisk.Mount(t, 4<<20)
	st, err := state.Open(filepath.Join(fs.Dir, "KeeperStorage"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w, err := audit.NewWriter(st, audit.Options{Machine: "ws-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(context.Background(), audit.Event{Type: audit.AgentStarted}); err != nil {
		t.Fatal(err)
	}
	settings := &schema.Document{Kind: schema.KindSettings, ID: "agent", Spec: schema.DefaultSettings()}

	fs.Fill()
	big := audit.Event{Type: audit.PolicyEvaluation, Details: map[string]any{"pad": string(make([]byte, 64<<10))}}
	var failed error
	for i := 0; i < 200 && failed == nil; i++ { // bbolt's free pages may take a few
		failed = w.Record(big)
	}
	if !errors.Is(failed, audit.ErrUnavailable) {
		t.Fatalf("Record on a full disk = %v; want ErrUnavailable", failed)
	}
	if h := w.Health(); h.OK || h.Failures == 0 || h.LastError == "" {
		t.Fatalf("Health on a full disk = %+v; want not OK with a failure and its error", h)
	}
	before := st.Current().Meta.Generation
	docs := []*schema.Document{settings}
	_, err = w.ApplyGeneration(state.Apply{Source: "local", Docs: docs}, nil,
		func(m state.Meta) []audit.Event { return []audit.Event{big, big} })
	if !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("ApplyGeneration on a full disk = %v; want ErrUnavailable", err)
	}
	if g := st.Current().Meta.Generation; g != before {
		t.Fatalf("generation %d committed without its audit events (was %d)", g, before)
	}

	fs.Free()
	e, err := w.Write(context.Background(), audit.Event{Type: audit.AdminAction})
	if err != nil {
		t.Fatalf("Write after space returned = %v; want it to work without a restart", err)
	}
	if h := w.Health(); !h.OK {
		t.Fatalf("Health after recovery = %+v; want OK", h)
	}
	m, err := w.ApplyGeneration(state.Apply{Source: "local", Docs: docs}, nil,
		func(m state.Meta) []audit.Event { return []audit.Event{{Type: audit.AdminAction}} })
	if err != nil || m.Generation != before+1 {
		t.Fatalf("ApplyGeneration after recovery = %+v, %v", m, err)
	}
	n, err := audit.Verify(st)
	if err != nil {
		t.Fatalf("chain after the full disk: %v", err)
	}
	// AGENT_STARTED, what fit before the disk filled, ADMIN_ACTION, and the
	// apply's ADMIN_ACTION and CONFIG_CHANGED.
	if uint64(n) != e.Seq+2 {
		t.Fatalf("Verify counted %d events; want %d", n, e.Seq+2)
	}
	evs, _, _ := audit.Query(st, audit.Filter{Types: []string{audit.ConfigChanged}})
	if len(evs) != 1 || evs[0].Details["generation"] != float64(m.Generation) {
		t.Fatalf("CONFIG_CHANGED events = %+v; want one for generation %d", evs, m.Generation)
	}
}

// A burst of events of one type cannot push out another: a subscriber
// that does not read while 3,000 POLICY_EVALUATION events are stored
// still gets the DRIFT_DETECTED that follows them, and every event, in
// order.
func TestSubscriberCatchesUpFromTheStore(t *testing.T) {
	st, err := state.Open(t.TempDir(), state.Options{NoSync: true}) // the test is about order, not durability
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w, err := audit.NewWriter(st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	drift, cancelDrift := w.Subscribe(audit.DriftDetected, audit.PolicyEvaluation)
	defer cancelDrift()
	all, cancelAll := w.Subscribe()
	defer cancelAll()
	const burst = 3000
	evs := make(chan error, 1)
	go func() {
		for i := 0; i < burst; i++ {
			if _, err := w.Write(context.Background(), audit.Event{Type: audit.PolicyEvaluation}); err != nil {
				evs <- err
				return
			}
		}
		_, err := w.Write(context.Background(), audit.Event{Type: audit.DriftDetected})
		evs <- err
	}()
	if err := <-evs; err != nil {
		t.Fatal(err)
	}
	for _, ch := range []<-chan audit.Event{drift, all} {
		var last uint64
		for i := 0; i <= burst; i++ {
			select {
			case e := <-ch:
				if e.Seq != last+1 {
					t.Fatalf("event %d after %d: a gap", e.Seq, last)
				}
				last = e.Seq
				if i == burst && e.Type != audit.DriftDetected {
					t.Fatalf("last event %s; want DRIFT_DETECTED", e.Type)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("got %d of %d events", i, burst+1)
			}
		}
	}
}
