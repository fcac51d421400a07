package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	out, code := warden(t, "--version")
	if code != 0 || !strings.HasPrefix(out, "warden ") || !strings.Contains(out, "go1.") {
		t.Fatalf("--version: exit %d, %q; want `warden VERSION (commit ..., go1.x)`", code, out)
	}
	out, code = warden(t, "version", "-o", "json")
	var v struct{ Version, Commit, Time, GoVersion string }
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Version == "" || v.Commit == "" || !strings.HasPrefix(v.GoVersion, "go1.") {
		t.Fatalf("version -o json: exit %d, %q", code, out)
	}
	if out, code := warden(t, "version", "-o", "yaml"); code != 2 {
		t.Fatalf("version -o yaml: exit %d; want 2 (usage)\n%s", code, out)
	}
}
