package jobs

import (
	"time"

	"warden/wallclock"
)

// Clock is the scheduler's and the runner's time source. Tests inject a
// fake so schedules, intervals, timeouts and cool-downs are exercised
// without sleeping.
type Clock interface {
	Now() time.Time
	// NewTimer fires after d has elapsed: for timeouts and grace periods.
	NewTimer(d time.Duration) Timer
	// At fires when the wall clock reaches deadline, even across a suspend
	// of the machine (package wallclock), or early when the wall clock is
	// set: for schedules.
	At(deadline time.Time) Timer
}

// Timer is a one-shot timer of a Clock. A timer whose duration is zero or
// negative fires at once.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

type realClock struct{}

// Now is the wall clock only (Round(0) drops the monotonic reading): due
// times computed from it compare on the clock the wall-clock timers of At
// fire on. With the monotonic reading kept, a due time would still look
// ahead after a suspend or a clock step, and the scheduler would re-arm an
// already expired timer again and again.
func (realClock) Now() time.Time                 { return time.Now().Round(0) }
func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }
func (realClock) At(deadline time.Time) Timer    { return wallclock.NewTimer(deadline) }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time { return r.t.C }
func (r realTimer) Stop() bool          { return r.t.Stop() }
