package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestGetReadsTheBinarysBuildInfo(t *testing.T) {
	i := Get()
	if i.GoVersion != runtime.Version() || i.Version == "" || i.Commit == "" || i.Time == "" {
		t.Fatalf("Get() = %+v", i)
	}
	if s := i.String(); !strings.HasPrefix(s, i.Version+" (commit ") || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("String() = %q", s)
	}
	bi, _ := debug.ReadBuildInfo()
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && s.Value != i.Commit {
			t.Fatalf("commit %q; the binary says %q", i.Commit, s.Value)
		}
	}
	long := Info{Version: "v1.2.3", Commit: "0123456789abcdef0123", Time: "2026-11-30T22:45:47Z", Modified: true, GoVersion: "go1.26.8"}
	if got, want := long.String(), "v1.2.3 (commit 0123456789ab, modified, 2026-11-30T22:45:47Z, go1.26.8)"; got != want {
		t.Fatalf("String() = %q; want %q", got, want)
	}
}
