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
