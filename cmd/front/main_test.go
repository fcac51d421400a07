package main

import (
	"slices"
	"testing"
)

func TestParseElevate(t *testing.T) {
	t.Setenv("WARDEN_ROOT", "/env/root")
	for _, tc := range []struct {
		args   []string
		ok     bool
		root   string
		argv   []string
		reason string
		noWait bool
	}{
		{args: []string{"elevate", "--", "id", "-u"}, ok: true, root: "/env/root", argv: []string{"id", "-u"}},
		{args: []string{"elevate", "id", "--root", "x"}, ok: true, root: "/env/root", argv: []string{"id", "--root", "x"}},
		{args: []string{"--root", "/r", "elevate", "ls"}, ok: true, root: "/r", argv: []string{"ls"}},
		{args: []string{"--root=/r", "elevate", "--root", "/s", "ls"}, ok: true, root: "/s", argv: []string{"ls"}},
		{args: []string{"elevate", "--reason", "disk full", "--no-wait", "--", "du"}, ok: true, root: "/env/root", argv: []string{"du"}, reason: "disk full", noWait: true},
		{args: []string{"elevate", "--reason=a=b", "du"}, ok: true, root: "/env/root", argv: []string{"du"}, reason: "a=b"},
		{args: []string{"elevate", "--reason", "--", "du"}, ok: true, root: "/env/root", argv: []string{"du"}, reason: "--"},
		{args: []string{"elevate", "elevate"}, ok: true, root: "/env/root", argv: []string{"elevate"}},
		{args: []string{"elevate", "--", "--help"}, ok: true, root: "/env/root", argv: []string{"--help"}},
		// Everything else is warden-core's.
		{args: []string{"elevate"}},
		{args: []string{"elevate", "--"}},
		{args: []string{"elevate", "--help", "id"}},
		{args: []string{"elevate", "-h"}},
		{args: []string{"elevate", "--no-wait=true", "id"}},
		{args: []string{"elevate", "--reason"}},
		{args: []string{"--root"}},
		{args: []string{"--verbose", "elevate", "id"}},
		{args: []string{"status"}},
		{args: []string{"agent", "elevate"}},
		{args: []string{}},
	} {
		root, o, ok := parseElevate(tc.args)
		if ok != tc.ok || (ok && (root != tc.root || !slices.Equal(o.Argv, tc.argv) || o.Reason != tc.reason || o.NoWait != tc.noWait)) {
			t.Errorf("parseElevate(%q) = %q %+v %v; want ok=%v root %q argv %q reason %q no-wait %v",
				tc.args, root, o, ok, tc.ok, tc.root, tc.argv, tc.reason, tc.noWait)
		}
	}
}
