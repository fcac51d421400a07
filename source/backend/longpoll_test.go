package backend

import (
	"testing"
	"time"
)

func TestPreferWait(t *testing.T) {
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"wait=30", 30 * time.Second},
		{"respond-async, wait=10", 10 * time.Second},
		{"handling=lenient; wait=5", 5 * time.Second},
		{"wait=100000", maxWait},
		{"wait=0", 0},
		{"wait=-3", 0},
		{"wait=abc", 0},
		{"", 0},
		{"return=minimal", 0},
	}
	for _, tc := range tests {
		if got := preferWait(tc.header); got != tc.want {
			t.Errorf("preferWait(%q) = %s, want %s", tc.header, got, tc.want)
		}
	}
}

// FuzzPreferWait: any header gives a wait between 0 and maxWait, in whole
// seconds.
func FuzzPreferWait(f *testing.F) {
	for _, s := range []string{"wait=30", "respond-async, wait=10", "wait=", "wait=99999999999999999999", "wait=1;wait=2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		d := preferWait(h)
		if d < 0 || d > maxWait || d%time.Second != 0 {
			t.Fatalf("preferWait(%q) = %s", h, d)
		}
	})
}
