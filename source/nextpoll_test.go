package source

import (
	"testing"
	"time"
)

func TestNextPoll(t *testing.T) {
	const interval = time.Minute
	tests := []struct {
		name string
		res  PollResult
		want time.Duration // -1: interval with jitter
	}{
		{"long poll held, unchanged", PollResult{Status: "unchanged", LongPoll: true, Took: 30 * time.Second}, 0},
		{"long poll applied", PollResult{Status: "applied", LongPoll: true, Took: 5 * time.Millisecond}, 0},
		{"long poll answered at once", PollResult{Status: "unchanged", LongPoll: true, Took: 5 * time.Millisecond}, longPollRetry},
		{"long poll, no bundle", PollResult{Status: "none", LongPoll: true, Took: 5 * time.Millisecond}, -1},
		{"static host", PollResult{Status: "unchanged", Took: 5 * time.Millisecond}, -1},
		{"static host applied", PollResult{Status: "applied"}, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.want >= 0 {
				if got := nextPoll(tc.res, interval); got != tc.want {
					t.Fatalf("nextPoll = %s, want %s", got, tc.want)
				}
				return
			}
			seen := map[time.Duration]bool{}
			for range 1000 {
				got := nextPoll(tc.res, interval)
				if got < interval*9/10 || got > interval*11/10 {
					t.Fatalf("nextPoll = %s, want within 10%% of %s", got, interval)
				}
				seen[got] = true
			}
			if len(seen) < 100 {
				t.Fatalf("%d distinct waits in 1000: no jitter", len(seen))
			}
		})
	}
}
