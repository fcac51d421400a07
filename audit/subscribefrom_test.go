package audit_test

import (
	"context"
	"testing"
	"time"

	"warden/audit"
)

// TestSubscribeFrom: a subscription started at an old sequence number
// delivers the stored events from there (read from the store), then the
// new ones, each once and in order; types filter both.
func TestSubscribeFrom(t *testing.T) {
	st := openStore(t, t.TempDir())
	w, err := audit.NewWriter(st, audit.Options{Machine: "ws-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx := context.Background()
	for i := range 3000 {
		typ := audit.PolicyEvaluation
		if i%3 == 0 {
			typ = audit.AdminAction
		}
		if _, err := w.Write(ctx, audit.Event{Type: typ, Component: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	all, cancelAll := w.SubscribeFrom(1001)
	defer cancelAll()
	admin, cancelAdmin := w.SubscribeFrom(1, audit.AdminAction)
	defer cancelAdmin()
	go func() {
		for range 500 {
			w.Write(ctx, audit.Event{Type: audit.AdminAction, Component: "test"})
		}
	}()
	next := uint64(1001)
	for next <= 3500 {
		select {
		case e := <-all:
			if e.Seq != next || len(e.Raw) == 0 {
				t.Fatalf("got seq %d (raw %d bytes), want %d", e.Seq, len(e.Raw), next)
			}
			next++
		case <-time.After(20 * time.Second):
			t.Fatalf("stalled at %d", next)
		}
	}
	var n int
	var last uint64
	for n < 1000+500 {
		select {
		case e := <-admin:
			if e.Type != audit.AdminAction || e.Seq <= last {
				t.Fatalf("admin subscription got %s seq %d after %d", e.Type, e.Seq, last)
			}
			last = e.Seq
			n++
		case <-time.After(20 * time.Second):
			t.Fatalf("admin subscription stalled after %d events", n)
		}
	}
}
