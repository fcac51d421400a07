package rss

import "testing"

func TestPeakMB(t *testing.T) {
	if mb := PeakMB(); mb <= 0 || mb > 1<<20 {
		t.Errorf("PeakMB = %v, want a plausible size", mb)
	}
	if _, err := Field("NoSuchField:"); err == nil {
		t.Error("Field of a missing line: no error")
	}
}
