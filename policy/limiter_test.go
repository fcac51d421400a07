package policy

import (
	"fmt"
	"testing"
	"time"

	"warden/schema"
)

func TestLimiter(t *testing.T) {
	l := NewLimiter(schema.RateLimit{}) // 100 a minute, queue of 100
	now := monday10
	for i := range 100 {
		if r := l.Reserve("s:a", now); !r.OK || r.Wait != 0 {
			t.Fatalf("request %d of the first 100: %+v, want at once", i, r)
		}
	}
	// Above the rate: queued, each 600ms after the one before, in order.
	var last time.Duration
	for i := range 100 {
		r := l.Reserve("s:a", now)
		if !r.OK || r.Wait <= last || r.Audit {
			t.Fatalf("queued request %d: %+v (previous wait %v)", i, r, last)
		}
		last = r.Wait
	}
	if last != 100*600*time.Millisecond {
		t.Errorf("the 100th queued waits %v, want 60s", last)
	}
	// Queue full: refused, audited once per burst.
	if r := l.Reserve("s:a", now); r.OK || !r.Audit {
		t.Fatalf("first refusal: %+v, want refused and audited", r)
	}
	for range 5 {
		if r := l.Reserve("s:a", now.Add(time.Millisecond)); r.OK || r.Audit {
			t.Fatalf("later refusal: %+v, want refused, not audited", r)
		}
	}
	// Another source is not affected.
	if r := l.Reserve("s:b", now); !r.OK || r.Wait != 0 {
		t.Fatalf("other source: %+v", r)
	}
	// One interval later there is room for one more in the queue.
	if r := l.Reserve("s:a", now.Add(600*time.Millisecond)); !r.OK {
		t.Fatalf("after one interval: %+v", r)
	}
	// Two minutes later the queue has drained and the bucket refilled: a
	// new burst is audited again.
	later := now.Add(2*time.Minute + 600*time.Millisecond)
	if r := l.Reserve("s:a", later); !r.OK || r.Wait != 0 {
		t.Fatalf("after the burst: %+v", r)
	}
	for range 199 {
		l.Reserve("s:a", later)
	}
	if r := l.Reserve("s:a", later); r.OK || !r.Audit {
		t.Fatalf("second burst: %+v, want refused and audited", r)
	}
}

func TestLimiterConfigured(t *testing.T) {
	l := NewLimiter(schema.RateLimit{PerMinute: 2, Queue: 1})
	now := monday10
	want := []Reservation{{OK: true}, {OK: true}, {OK: true, Wait: 30 * time.Second}, {Wait: 60 * time.Second, Audit: true}}
	for i, w := range want {
		if got := l.Reserve("k", now); got != w {
			t.Errorf("request %d: got %+v, want %+v", i, got, w)
		}
	}
}

func TestLimiterClockBackwards(t *testing.T) {
	l := NewLimiter(schema.RateLimit{PerMinute: 1, Queue: 1})
	l.Reserve("k", monday10)
	if r := l.Reserve("k", monday10.Add(-time.Hour)); !r.OK || r.Wait > time.Hour+time.Minute {
		t.Fatalf("got %+v", r)
	}
}

func TestLimiterBoundsMemory(t *testing.T) {
	l := NewLimiter(schema.RateLimit{})
	l.maxSources = 100
	now := monday10
	for i := range 1000 {
		// every source busy: exhaust its bucket
		for range 101 {
			l.Reserve(fmt.Sprint("busy-", i), now)
		}
		if l.Len() > 100 {
			t.Fatalf("%d sources remembered, bound is 100", l.Len())
		}
	}
	if n := l.Sweep(now.Add(10 * time.Minute)); n == 0 || l.Len() != 0 {
		t.Fatalf("Sweep forgot %d, %d left", n, l.Len())
	}
}

func TestBreaker(t *testing.T) {
	b := NewBreaker(schema.CircuitBreaker{}) // 10 failures, 5 minutes
	now := monday10
	for i := range 9 {
		if b.Record("s:a", true, now) {
			t.Fatalf("opened after %d failures", i+1)
		}
	}
	b.Record("s:a", false, now) // a success resets the count
	for i := range 9 {
		if b.Record("s:a", true, now) {
			t.Fatalf("opened after %d failures following a success", i+1)
		}
	}
	if !b.Record("s:a", true, now) {
		t.Fatal("10th consecutive failure did not open the circuit")
	}
	if ok, until := b.Allow("s:a", now.Add(time.Minute)); ok || !until.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("open circuit: Allow = %v, %v", ok, until)
	}
	if b.Record("s:a", true, now.Add(time.Minute)) {
		t.Fatal("a failure in flight while open opened it again")
	}
	if ok, _ := b.Allow("s:b", now); !ok {
		t.Fatal("another source is refused")
	}
	if ok, _ := b.Allow("s:a", now.Add(5*time.Minute)); !ok {
		t.Fatal("circuit still open after 5 minutes")
	}
	for i := range 9 {
		if b.Record("s:a", true, now.Add(6*time.Minute)) {
			t.Fatalf("count did not restart at zero: opened after %d", i+1)
		}
	}
	if b.Len() != 1 {
		t.Errorf("remembers %d sources, want 1 (successes are not kept)", b.Len())
	}
}

func TestBreakerResetsWithoutAllow(t *testing.T) {
	b := NewBreaker(schema.CircuitBreaker{Failures: 2, OpenSeconds: 60})
	b.Record("k", true, monday10)
	if !b.Record("k", true, monday10) {
		t.Fatal("did not open after 2")
	}
	// After the open period, the first failure counts as the first.
	if b.Record("k", true, monday10.Add(time.Minute)) {
		t.Fatal("reopened on one failure after the period")
	}
	if !b.Record("k", true, monday10.Add(time.Minute)) {
		t.Fatal("did not reopen after 2 more")
	}
}

func TestBreakerBoundsMemory(t *testing.T) {
	b := NewBreaker(schema.CircuitBreaker{Failures: 1, OpenSeconds: 60})
	b.maxSources = 50
	for i := range 500 {
		b.Record(fmt.Sprint("k", i), true, monday10) // every one opens
		if b.Len() > 50 {
			t.Fatalf("%d sources remembered, bound is 50", b.Len())
		}
	}
	if n := b.Sweep(monday10.Add(time.Minute)); n == 0 || b.Len() != 0 {
		t.Fatalf("Sweep forgot %d, %d left", n, b.Len())
	}
}

func TestCircuitOpenDecision(t *testing.T) {
	d := CircuitOpen()
	if d.Effective != Deny || d.Reason != ReasonCircuitOpen || !d.Failed() {
		t.Fatalf("got %+v", d)
	}
}
