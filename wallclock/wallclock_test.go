package wallclock

import (
	"os"
	"testing"
	"time"
)

const waitLimit = 10 * time.Second

func TestFiresAtDeadline(t *testing.T) {
	deadline := time.Now().Add(50 * time.Millisecond)
	tm := NewTimer(deadline)
	select {
	case got := <-tm.C():
		if got.Before(deadline) {
			t.Errorf("fired at %v, before the deadline %v", got, deadline)
		}
	case <-time.After(waitLimit):
		t.Fatal("never fired")
	}
	if tm.Stop() {
		t.Error("Stop after the fire reported it stopped the timer")
	}
}

func TestPastDeadlineFiresAtOnce(t *testing.T) {
	for _, deadline := range []time.Time{time.Now().Add(-time.Hour), {}, time.Unix(0, 0)} {
		select {
		case <-NewTimer(deadline).C():
		case <-time.After(waitLimit):
			t.Fatalf("deadline %v: never fired", deadline)
		}
	}
}

// A stopped timer never fires and gives back its descriptor.
func TestStop(t *testing.T) {
	before := openFDs(t)
	var timers []*Timer
	for range 100 {
		timers = append(timers, AfterFunc(time.Now().Add(100*time.Millisecond), func() {
			t.Error("a stopped timer fired")
		}))
	}
	if n := openFDs(t); n < before+100 {
		t.Fatalf("%d descriptors open with 100 timers armed, %d before: not timerfds?", n, before)
	}
	for _, tm := range timers {
		if !tm.Stop() {
			t.Fatal("Stop of an armed timer reported false")
		}
		if tm.Stop() {
			t.Fatal("second Stop reported true")
		}
	}
	deadline := time.Now().Add(waitLimit)
	for openFDs(t) > before {
		if time.Now().After(deadline) {
			t.Fatalf("descriptors leaked: %d open, %d before", openFDs(t), before)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // past the deadline: nothing may fire
}

func TestAfterFuncRunsOnce(t *testing.T) {
	ran := make(chan struct{}, 2)
	AfterFunc(time.Now().Add(10*time.Millisecond), func() { ran <- struct{}{} })
	select {
	case <-ran:
	case <-time.After(waitLimit):
		t.Fatal("f never ran")
	}
	select {
	case <-ran:
		t.Fatal("f ran twice")
	case <-time.After(100 * time.Millisecond):
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
