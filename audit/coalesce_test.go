package audit_test

import (
	"strings"
	"testing"
	"time"

	"warden/audit"
	"warden/state"
)

func TestCoalescerCapsAndCounts(t *testing.T) {
	st, err := state.Open(t.TempDir(), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	w, err := audit.NewWriter(st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	now := time.Unix(1000, 0)
	c := audit.NewCoalescer(w, 10*time.Second, func() time.Time { return now })
	defer c.Close()
	huge := strings.Repeat("é", 20000)
	ev := audit.Event{Type: audit.AuthorizationFailed, UserInfo: &audit.UserInfo{Identity: huge},
		TargetInfo: &audit.TargetInfo{Path: huge}, Details: map[string]any{"reason": huge}}
	lookups := 0
	enrich := func(e *audit.Event) { lookups++; e.UserInfo.PeerExe = "/usr/bin/flood" }
	steps := []struct {
		key     string
		advance time.Duration
		written bool
	}{
		{"a", 0, true}, {"b", 0, true}, {"a", 0, false}, {"a", 9 * time.Second, false},
		{"a", time.Second, true}, // the window ended: a new first (after the count of 2)
		{"a", 0, false},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		if got := c.Record(s.key, ev, enrich); got != s.written {
			t.Fatalf("step %d: Record(%s) = %v; want %v", i, s.key, got, s.written)
		}
	}
	if lookups != 3 {
		t.Fatalf("%d lookups; want 3 (one per event written now)", lookups)
	}
	c.Flush()
	evs, _, err := audit.Query(st, audit.Filter{Types: []string{audit.AuthorizationFailed}})
	if err != nil {
		t.Fatal(err)
	}
	var repeats []float64
	for _, e := range evs {
		for _, f := range []string{e.UserInfo.Identity, e.TargetInfo.Path, e.Details["reason"].(string)} {
			if len(f) > audit.MaxField || !strings.HasSuffix(f, "(40000 bytes)") {
				t.Fatalf("field of %d bytes %q...; want at most %d, saying what was cut", len(f), f[:20], audit.MaxField)
			}
		}
		if e.UserInfo.PeerExe != "/usr/bin/flood" {
			t.Fatalf("event without the lookup's detail: %+v", e.UserInfo)
		}
		if r, ok := e.Details["repeated"].(float64); ok {
			repeats = append(repeats, r)
		}
	}
	// a, b, count 2 for a, a again, then at Flush count 1 for a.
	if len(evs) != 5 || len(repeats) != 2 || repeats[0] != 2 || repeats[1] != 1 {
		t.Fatalf("%d events with repeats %v; want 5 events, repeats [2 1]", len(evs), repeats)
	}
}
