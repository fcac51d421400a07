// Package wallclock has timers that fire at an instant of the wall clock,
// for the deadlines a user reads off a calendar: a job's schedule, a
// grant's expiry.
//
// A time.Timer counts on the monotonic clock, which stands still while the
// machine is suspended: a laptop asleep from 01:00 to 03:00 runs a 02:00
// job at 04:00, and keeps a grant that expired at 01:30 in force until
// 02:30 wall time after it wakes. These timers are Linux timerfds on
// CLOCK_REALTIME with an absolute deadline, which the kernel fires as soon
// as the wall clock has passed it, suspend or not (systemd's OnCalendar
// timers work the same way). When the wall clock is set (by hand, by NTP
// stepping it) a timer fires at once, so its holder reads the time again
// and arms a new one: holders must treat a fire as "look now", never as
// "the deadline has passed".
package wallclock

import (
	"errors"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Timer is a one-shot timer. Its methods are safe to call concurrently.
type Timer struct {
	c     chan time.Time // NewTimer's channel; nil for AfterFunc
	state atomic.Int32   // armed, fired or stopped
	file  *os.File       // the timerfd; nil on the fallback
	mono  *time.Timer    // the fallback when no timerfd could be made
}

const (
	armed int32 = iota
	fired
	stopped
)

// NewTimer returns a timer that sends the time on C once the wall clock
// reaches deadline (at once for a deadline in the past), or when the wall
// clock is set.
func NewTimer(deadline time.Time) *Timer {
	c := make(chan time.Time, 1)
	t := AfterFunc(deadline, func() {
		select {
		case c <- time.Now():
		default:
		}
	})
	t.c = c
	return t
}

// AfterFunc calls f in its own goroutine once the wall clock reaches
// deadline, or when the wall clock is set.
func AfterFunc(deadline time.Time, f func()) *Timer {
	t := &Timer{}
	fire := func() {
		if t.state.CompareAndSwap(armed, fired) {
			f()
		}
	}
	file, err := timerfd(deadline)
	if err != nil {
		// Out of descriptors, or a kernel without timerfd: a monotonic
		// timer is late after a suspend but still fires.
		t.mono = time.AfterFunc(time.Until(deadline), fire)
		return t
	}
	t.file = file
	go func() {
		defer file.Close()
		var buf [8]byte
		_, err := file.Read(buf[:])
		if errors.Is(err, os.ErrClosed) {
			return // stopped
		}
		fire() // expired, or ECANCELED: the clock was set
	}()
	return t
}

// C is the channel of a timer made by NewTimer.
func (t *Timer) C() <-chan time.Time { return t.c }

// Stop prevents the timer from firing. It reports whether it stopped the
// timer, false if the timer had already fired or been stopped.
func (t *Timer) Stop() bool {
	if !t.state.CompareAndSwap(armed, stopped) {
		return false
	}
	if t.mono != nil {
		t.mono.Stop()
	} else {
		t.file.Close()
	}
	return true
}

func timerfd(deadline time.Time) (*os.File, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_REALTIME, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// Seconds and nanoseconds apart: UnixNano overflows after 2262, and a
	// far deadline must not wrap into the past. A zero it_value would
	// disarm the timer: a deadline at or before the epoch is one
	// nanosecond after it, long past.
	spec := unix.ItimerSpec{Value: unix.Timespec{Sec: deadline.Unix(), Nsec: int64(deadline.Nanosecond())}}
	if spec.Value.Sec < 0 || spec.Value.Sec == 0 && spec.Value.Nsec == 0 {
		spec.Value = unix.Timespec{Nsec: 1}
	}
	if err := unix.TimerfdSettime(fd, unix.TFD_TIMER_ABSTIME|unix.TFD_TIMER_CANCEL_ON_SET, &spec, nil); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Non-blocking, so that reads wait in the runtime's poller and Close
	// wakes a pending read.
	return os.NewFile(uintptr(fd), "timerfd"), nil
}
