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

// A deadline centuries away (past what UnixNano can hold) does not wrap
// into the past and fire at once.
func TestFarDeadline(t *testing.T) {
	for _, year := range []int{2263, 3000, 9999} {
		tm := NewTimer(time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC))
		select {
		case <-tm.C():
			t.Errorf("a timer for %d fired", year)
		case <-time.After(50 * time.Millisecond):
		}
		tm.Stop()
	}
}

// A stopped timer never fires and gives back its descriptor.
func TestStop(t *testing.T) {
	var timers []*Timer
	defer func() {
		for _, tm := range timers {
			tm.Stop()
		}
	}()
	fired := make(chan struct{}, 100)
	for range 100 {
		timers = append(timers, AfterFunc(time.Now().Add(100*time.Millisecond), func() { fired <- struct{}{} }))
	}
	if n := timerfds(t); n < 100 {
		t.Fatalf("%d timerfds open with 100 timers armed", n)
	}
	for _, tm := range timers {
		if !tm.Stop() {
			t.Fatal("Stop of an armed timer reported false")
		}
		if tm.Stop() {
			t.Fatal("second Stop reported true")
		}
	}
	// Every timerfd is closed, this test's and those of the tests before
	// it (a fired timer closes its own in the background).
	deadline := time.Now().Add(waitLimit)
	for timerfds(t) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d timerfds still open after Stop", timerfds(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-fired:
		t.Fatal("a stopped timer fired")
	case <-time.After(200 * time.Millisecond): // past the deadline
	}
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

// timerfds counts this process's open timerfds.
func timerfds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "anon_inode:[timerfd]" {
			n++
		}
	}
	return n
}
