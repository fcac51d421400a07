package reconcile

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

// The acceptance check `drift`, against the package: a loosened mode, an
// edited appsettings.json and a deleted policy are put back, recorded and
// audited.
func TestAcceptanceDrift(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	e.apply(validated(t, policyJSON("deny-netcat", 100))...)
	f := e.path("policies/deny-netcat.json")
	e.waitFor("policy materialized", func() bool { return readFile(f) == string(policyJSON("deny-netcat", 100)) })

	if err := os.Chmod(f, 0o666); err != nil {
		t.Fatal(err)
	}
	e.waitFor("mode put back", func() bool { return mode(t, f) == 0o600 })

	// appsettings.json is the settings controller's: tamper with it once
	// written, or its first write (no drift) is what replaces the edit.
	settings := e.path("appsettings.json")
	e.waitFor("appsettings.json materialized", func() bool { return strings.Contains(readFile(settings), "AllowedHosts") })
	if err := os.WriteFile(settings, []byte(`{"tampered": true}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitFor("appsettings.json restored", func() bool {
		s := readFile(settings)
		return !strings.Contains(s, "tampered") && s != ""
	})
	if s := readFile(settings); !strings.Contains(s, `"AllowedHosts": "localhost;127.0.0.1"`) {
		t.Fatalf("appsettings.json lacks AllowedHosts:\n%s", s)
	}

	if err := os.Remove(f); err != nil {
		t.Fatal(err)
	}
	e.waitFor("deleted policy restored", func() bool { return readFile(f) != "" })
	e.waitQuiet()

	for _, want := range []struct{ id, field string }{
		{"policies/deny-netcat.json", "mode"}, {"appsettings.json", "content"}, {"policies/deny-netcat.json", "exists"},
	} {
		if !e.hasDrift("File", want.id, want.field, state.DriftCorrected) {
			t.Errorf("no corrected drift record for %s %s; have %+v", want.id, want.field, e.drift())
		}
	}
	if n := len(e.events(audit.DriftDetected)); n != 3 {
		t.Errorf("DRIFT_DETECTED events: got %d, want 3", n)
	}
	if n := len(e.events(audit.DriftCorrected)); n != 3 {
		t.Errorf("DRIFT_CORRECTED events: got %d, want 3", n)
	}
	ev := e.events(audit.DriftDetected)[0]
	if ev.Component != "reconcile" || ev.TargetInfo == nil || ev.TargetInfo.Kind != "Policy" || ev.TargetInfo.ID != "deny-netcat" {
		t.Errorf("DRIFT_DETECTED event: got %+v, target %+v", ev, ev.TargetInfo)
	}
}

// Every kind of drift of a materialized file, one case each.
func TestFilesDrift(t *testing.T) {
	const rel = "policies/deny-netcat.json"
	cases := []struct {
		name   string
		root   bool // needs root (chown)
		tamper func(t *testing.T, path string)
		kind   string
		id     string
		field  string
	}{
		{name: "content edited", field: "content", tamper: func(t *testing.T, p string) {
			must(t, os.WriteFile(p, []byte(`{"kind":"Policy"}`), 0o600))
		}},
		{name: "appended in place", field: "content", tamper: func(t *testing.T, p string) {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			must(t, err)
			f.WriteString(" ")
			f.Close()
		}},
		{name: "deleted", field: "exists", tamper: func(t *testing.T, p string) { must(t, os.Remove(p)) }},
		{name: "mode loosened", field: "mode", tamper: func(t *testing.T, p string) { must(t, os.Chmod(p, 0o644)) }},
		{name: "setuid bit", field: "mode", tamper: func(t *testing.T, p string) { must(t, syscall.Chmod(p, 0o4600)) }},
		{name: "owner changed", root: true, field: "owner", tamper: func(t *testing.T, p string) { must(t, os.Chown(p, 4242, 4242)) }},
		{name: "replaced by symlink", field: "type", tamper: func(t *testing.T, p string) {
			tmp := outside(t, p)
			must(t, os.Symlink("/etc/hostname", tmp))
			must(t, os.Rename(tmp, p))
		}},
		{name: "replaced by fifo", field: "type", tamper: func(t *testing.T, p string) {
			tmp := outside(t, p)
			must(t, syscall.Mkfifo(tmp, 0o600))
			must(t, os.Rename(tmp, p))
		}},
		{name: "replaced by empty folder", field: "type", tamper: func(t *testing.T, p string) {
			// Two steps: the reconciler may restore the file in between
			// (drift "exists") and then the mkdir fails; either way the
			// file must end up right.
			must(t, os.Remove(p))
			os.Mkdir(p, 0o755)
		}},
		{name: "extra file", kind: "File", id: "policies/allow-all.json", field: "exists", tamper: func(t *testing.T, p string) {
			must(t, os.WriteFile(strings.Replace(p, "deny-netcat", "allow-all", 1), []byte(`{"kind":"Policy","id":"allow-all"}`), 0o600))
		}},
		{name: "moved away", field: "exists", tamper: func(t *testing.T, p string) {
			must(t, os.Rename(p, p+".bak"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("needs root")
			}
			e := newEnv(t, nil)
			e.start()
			want := policyJSON("deny-netcat", 100)
			e.apply(validated(t, want)...)
			p := e.path(rel)
			e.waitFor("materialized", func() bool { return readFile(p) == string(want) })
			e.waitQuiet()

			tc.tamper(t, p)
			id := tc.id
			if id == "" {
				id = rel
			}
			e.waitFor("drift corrected", func() bool {
				return e.hasDrift("File", id, tc.field, state.DriftCorrected) ||
					tc.name == "replaced by empty folder" && e.hasDrift("File", id, "exists", state.DriftCorrected)
			})
			e.waitQuiet()
			if got := readFile(p); got != string(want) {
				t.Errorf("content: got %q, want %q", got, want)
			}
			fi, err := os.Lstat(p)
			must(t, err)
			if !fi.Mode().IsRegular() || fi.Mode()&os.ModeType|fi.Mode().Perm()|fi.Mode()&os.ModeSetuid != 0o600 {
				t.Errorf("mode: got %v, want -rw-------", fi.Mode())
			}
			if tc.root {
				if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
					t.Errorf("owner: got %d:%d, want 0:0", st.Uid, st.Gid)
				}
			}
			if _, err := os.Stat(e.path("policies/allow-all.json")); err == nil {
				t.Error("extra file still present")
			}
			want1 := 1
			if tc.name == "replaced by empty folder" {
				want1 = len(e.drift()) // one or two, see the case
			}
			if n := len(e.events(audit.DriftDetected)); n != want1 {
				t.Errorf("DRIFT_DETECTED: got %d, want %d; records %+v", n, want1, e.drift())
			}
			if n := len(e.events(audit.DriftCorrected)); n != want1 {
				t.Errorf("DRIFT_CORRECTED: got %d, want %d", n, want1)
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// outside returns a fresh path on p's file system but outside the agent
// root, to build a replacement there and rename it into place atomically.
func outside(t testing.TB, p string) string {
	t.Helper()
	dir := filepath.Dir(filepath.Dir(filepath.Dir(p))) // parent of the root
	return filepath.Join(dir, "tmp-"+filepath.Base(p))
}

// The periodic resync verifies content, not the stat cache: a cache entry
// whose stat still matches but whose hash is wrong (what a faked change
// time would leave) is read again at the next period, instead of being
// trusted. With the poisoned entry trusted, the resync would "restore" a
// file that is right.
func TestPeriodicResyncHashesContent(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.ResyncInterval = 300 * time.Millisecond })
	e.start()
	rel := e.denyNetcat()
	time.Sleep(racyWindow + 50*time.Millisecond) // past the racy window
	e.m.Resync()
	f := e.m.files
	e.waitFor("stat cached", func() bool { f.mu.Lock(); defer f.mu.Unlock(); _, ok := f.seen[rel]; return ok })
	e.waitQuiet()
	writes := totalWrites(t, e)
	right := sha256.Sum256([]byte(readFile(e.path(rel))))

	f.mu.Lock()
	id := f.seen[rel]
	id.sum = sha256.Sum256([]byte("what the cache wrongly believes"))
	f.seen[rel] = id
	f.mu.Unlock()

	e.waitFor("content hashed again", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		got, ok := f.seen[rel]
		return ok && got.sum == right
	})
	e.waitQuiet()
	if got := totalWrites(t, e); got != writes {
		t.Errorf("the periodic resync rewrote a file that was right: %v writes", got-writes)
	}
	if n := len(e.events(audit.DriftDetected)); n != 0 {
		t.Errorf("drift reported for a file that was right: %+v", e.drift())
	}
}

// A generation that changes one of 200 documents makes the files
// controller look at that file (and the settings file), not at all 200;
// a removed document's file goes.
func TestGenerationReconcilesOnlyChangedFiles(t *testing.T) {
	e := newEnv(t, nil)
	e.start()
	docs := policies(t, 200)
	e.apply(docs...)
	e.waitFor("materialized", func() bool { return readFile(e.path("policies/p-00199.json")) != "" })
	e.waitQuiet()
	// One more generation so the controller has a set to compare with.
	e.apply(docs...)
	e.waitQuiet()
	before, perms := e.count(FilesController), e.count(PermissionsController)

	next := slices.Clone(docs[:199]) // p-00199 removed
	next[7] = validated(t, policyJSON("p-00007", 4242))[0]
	e.apply(next...)
	e.waitFor("p-00007 rewritten", func() bool { return readFile(e.path("policies/p-00007.json")) == string(policyJSON("p-00007", 4242)) })
	e.waitFor("p-00199 removed", func() bool { _, err := os.Stat(e.path("policies/p-00199.json")); return os.IsNotExist(err) })
	e.waitQuiet()
	if n := e.count(FilesController) - before; n > 10 {
		t.Errorf("the files controller reconciled %d keys for a generation that changed 2 files", n)
	}
	// The watch queues policies/ itself as its files change (4 here); a
	// resync after the generation would add the root's every folder (16).
	if n := e.count(PermissionsController) - perms; n > 8 {
		t.Errorf("the permissions controller reconciled %d keys for a generation", n)
	}
	if recs := e.drift(); len(recs) != 0 {
		t.Errorf("drift for desired-state changes: %+v", recs)
	}
}

// patchDesired makes from the last desired set exactly what desiredFiles
// makes for a generation that changed documents in place, leaves the last
// set as it was, and declines a generation that removed or added one.
func TestPatchDesiredSameAsDesiredFiles(t *testing.T) {
	st, err := state.Open(filepath.Join(t.TempDir(), "KeeperStorage"), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	apply := func(docs []*schema.Document) *state.Snapshot {
		t.Helper()
		if _, err := st.ApplyGeneration(state.Apply{Source: "local", Docs: docs}); err != nil {
			t.Fatal(err)
		}
		return st.Current()
	}
	l := Listen{API: "127.0.0.1:8443"}
	docs := policies(t, 50)
	first := apply(docs)
	prev := desiredFiles(first, l)
	next := slices.Clone(docs)
	next[3] = validated(t, policyJSON("p-00003", 4242))[0]
	next[40] = validated(t, policyJSON("p-00040", 4343))[0]
	second := apply(next)
	got, ok := patchDesired(prev, first.Docs, second, l)
	if !ok {
		t.Fatal("two documents changed in place: not patched")
	}
	if want := desiredFiles(second, l); !reflect.DeepEqual(got, want) {
		t.Error("patched set differs from desiredFiles'")
	}
	if !reflect.DeepEqual(prev, desiredFiles(first, l)) {
		t.Error("the last set was changed")
	}
	if _, ok := patchDesired(got, second.Docs, apply(next[1:]), l); ok {
		t.Error("a generation without p-00000 was patched")
	}
}
