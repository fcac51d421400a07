package reconcile

import (
	"testing"
	"time"
)

func TestQueueDedup(t *testing.T) {
	q := newQueue()
	q.add("a", "b", "a", "a")
	if ready, _, _ := q.depth(); ready != 2 {
		t.Fatalf("ready: got %d, want 2", ready)
	}
	k, _ := q.get()
	if k != "a" {
		t.Fatalf("first key: got %q, want a", k)
	}
	// Added while being processed: not handed out twice at once, but
	// queued again once done.
	q.add("a")
	if k2, _ := q.get(); k2 != "b" {
		t.Fatalf("second key: got %q, want b", k2)
	}
	if ready, active, _ := q.depth(); ready != 0 || active != 2 {
		t.Fatalf("depth: ready %d active %d, want 0 and 2", ready, active)
	}
	q.done("a")
	q.done("b")
	if k3, _ := q.get(); k3 != "a" {
		t.Fatalf("requeued key: got %q, want a", k3)
	}
	q.done("a")
	if ready, active, _ := q.depth(); ready != 0 || active != 0 {
		t.Fatalf("depth after done: %d %d", ready, active)
	}
}

func TestQueueAddAfterKeepsEarliest(t *testing.T) {
	q := newQueue()
	q.addAfter("k", time.Hour)
	q.addAfter("k", time.Millisecond)
	q.addAfter("k", time.Hour) // later: ignored
	if k, ok := q.get(); !ok || k != "k" {
		t.Fatalf("get: %q %v", k, ok)
	}
	if _, _, waiting := q.depth(); waiting != 0 {
		t.Fatalf("waiting: got %d, want 0", waiting)
	}
	q.done("k")
	q.addAfter("x", time.Hour)
	q.stop()
	if _, ok := q.get(); ok {
		t.Fatal("get after stop returned a key")
	}
}

func TestBackoff(t *testing.T) {
	cases := []struct {
		n    int
		want time.Duration
	}{
		{1, 50 * time.Millisecond},
		{2, 100 * time.Millisecond},
		{5, 800 * time.Millisecond},
		{13, 204800 * time.Millisecond},
		{14, 5 * time.Minute},
		{1000, 5 * time.Minute},
	}
	for _, tc := range cases {
		if got := backoff(tc.n, 50*time.Millisecond, 5*time.Minute); got != tc.want {
			t.Errorf("backoff(%d): got %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestFailureCounts(t *testing.T) {
	q := newQueue()
	for i := 1; i <= 3; i++ {
		if n := q.fail("k"); n != i {
			t.Fatalf("fail %d: got %d", i, n)
		}
	}
	q.forget("k")
	if n := q.fail("k"); n != 1 {
		t.Fatalf("after forget: got %d, want 1", n)
	}
}
