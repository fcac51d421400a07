package audit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"warden/audit"
)

// A subscriber reading while 16 writers store events gets every event
// once, in sequence order, as Write returned it: its buffers are reused
// from batch to batch, and nothing delivered is overwritten by a later
// batch.
func TestSubscriberGetsEveryEventAsStored(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	w, err := audit.NewWriter(st, audit.Options{Machine: "ws-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	sub, cancel := w.Subscribe()
	defer cancel()
	const writers, each = 16, 100
	var mu sync.Mutex
	written := map[uint64]audit.Event{}
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				e, err := w.Write(context.Background(), audit.Event{Type: audit.PolicyEvaluation, Component: "test",
					UserInfo: &audit.UserInfo{User: fmt.Sprintf("u%d-%d", g, i)}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				written[e.Seq] = e
				mu.Unlock()
			}
		}(g)
	}
	var got []audit.Event
	timeout := time.After(30 * time.Second)
	for len(got) < writers*each {
		select {
		case e := <-sub:
			got = append(got, e)
		case <-timeout:
			t.Fatalf("got %d of %d events", len(got), writers*each)
		}
	}
	wg.Wait()
	for i, e := range got {
		if i > 0 && e.Seq != got[i-1].Seq+1 {
			t.Fatalf("event %d after %d: out of order or a gap", e.Seq, got[i-1].Seq)
		}
		want, ok := written[e.Seq]
		if !ok || e.ID != want.ID || e.Hash != want.Hash || e.UserInfo.User != want.UserInfo.User {
			t.Fatalf("delivered seq %d = %s %s %s; Write returned %s %s %v", e.Seq, e.ID, e.Hash, e.UserInfo.User,
				want.ID, want.Hash, want.UserInfo)
		}
	}
	if n, err := audit.Verify(st); err != nil || n != writers*each {
		t.Fatalf("Verify = %d, %v; want %d intact", n, err, writers*each)
	}
}
