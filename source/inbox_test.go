package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"warden/audit"
	"warden/schema"
)

type outcome struct{ name, what string }

// startInbox runs an inbox on a's root and returns the outcomes it reports.
func startInbox(t *testing.T, a *agent) (string, <-chan outcome) {
	t.Helper()
	dir := filepath.Join(a.root, "inbox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	in := NewInbox(dir, a.p, nil)
	ch := make(chan outcome, 100)
	in.observe = func(name, what string) { ch <- outcome{name, what} }
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := in.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return dir, ch
}

// await returns the next outcome; the deadline only guards against a hang.
func await(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(20 * time.Second):
		t.Fatal("no inbox outcome within 20 s")
		return outcome{}
	}
}

// drop delivers data the documented way: NAME.part, then rename.
func drop(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name+".part"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, name+".part"), filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func TestInbox(t *testing.T) {
	key, stranger := newKey(t), newKey(t)
	a := newAgent(t, key)
	dir, ch := startInbox(t, a)
	if err := os.WriteFile(filepath.Join(dir, "ignored.tar.gz.part"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	drop(t, dir, "i5.tar.gz", targz(t, craft(t, key, schema.Manifest{Version: 5}, docFiles(nil))))
	if o := await(t, ch); o != (outcome{"i5.tar.gz", "done"}) {
		t.Fatalf("got %v, want i5.tar.gz done", o)
	}
	if v := a.store.Current().Meta.BundleVersion; v != 5 {
		t.Fatalf("bundle version %d, want 5", v)
	}
	drop(t, dir, "i4.tar.gz", targz(t, craft(t, key, schema.Manifest{Version: 4}, docFiles(nil))))
	if o := await(t, ch); o != (outcome{"i4.tar.gz", "rejected"}) {
		t.Fatalf("got %v, want i4.tar.gz rejected", o)
	}
	drop(t, dir, "i9.tar.gz", targz(t, craft(t, stranger, schema.Manifest{Version: 9}, docFiles(nil))))
	if o := await(t, ch); o != (outcome{"i9.tar.gz", "rejected"}) {
		t.Fatalf("got %v, want i9.tar.gz rejected", o)
	}
	for _, tc := range []struct{ file, want string }{
		{"done/i5.tar.gz", ""},
		{"rejected/i4.tar.gz", ""},
		{"rejected/i4.tar.gz.reason", "version not above the applied one"},
		{"rejected/i9.tar.gz.reason", "key not trusted"},
		{"ignored.tar.gz.part", "half"},
	} {
		data, err := os.ReadFile(filepath.Join(dir, tc.file))
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		if tc.want != "" && (!strings.Contains(string(data), tc.want) || strings.Count(string(data), "\n") > 1) {
			t.Errorf("%s = %q, want one line containing %q", tc.file, data, tc.want)
		}
	}
	if v := a.store.Current().Meta.BundleVersion; v != 5 {
		t.Errorf("bundle version %d after refusals, want 5", v)
	}
	if n := len(a.events(t, audit.BundleRejected)); n != 2 {
		t.Errorf("%d BUNDLE_REJECTED events, want 2", n)
	}
	// The same name again does not replace the earlier file in done/.
	drop(t, dir, "i5.tar.gz", targz(t, craft(t, key, schema.Manifest{Version: 6}, docFiles(nil))))
	if o := await(t, ch); o != (outcome{"i5.tar.gz", "done"}) {
		t.Fatalf("got %v, want i5.tar.gz done", o)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "done", "i5*.tar.gz")); len(m) != 2 {
		t.Errorf("done/ holds %v, want two i5 bundles", m)
	}
}

// Bundles dropped while the agent was stopped apply at start, oldest first.
func TestInboxAtStart(t *testing.T) {
	key := newKey(t)
	a := newAgent(t, key)
	dir := filepath.Join(a.root, "inbox")
	os.MkdirAll(dir, 0o700)
	old := time.Now().Add(-time.Hour)
	for i, v := range []int64{2, 3} {
		name := filepath.Join(dir, "b"+string(rune('0'+v))+".tar.gz")
		os.WriteFile(name, targz(t, craft(t, key, schema.Manifest{Version: v}, docFiles(nil))), 0o600)
		os.Chtimes(name, old.Add(time.Duration(i)*time.Minute), old.Add(time.Duration(i)*time.Minute))
	}
	_, ch := startInbox(t, a)
	for _, want := range []outcome{{"b2.tar.gz", "done"}, {"b3.tar.gz", "done"}} {
		if o := await(t, ch); o != want {
			t.Fatalf("got %v, want %v", o, want)
		}
	}
	if v := a.store.Current().Meta.BundleVersion; v != 3 {
		t.Errorf("bundle version %d, want 3", v)
	}
}

// A plain copy (no rename) that pauses half way is not refused as
// truncated: the inbox waits until the writer is done.
func TestInboxWaitsForCopy(t *testing.T) {
	key := newKey(t)
	a := newAgent(t, key)
	dir, ch := startInbox(t, a)
	data := targz(t, craft(t, key, schema.Manifest{Version: 1}, docFiles(nil)))
	f, err := os.Create(filepath.Join(dir, "copy.tar.gz"))
	if err != nil {
		t.Fatal(err)
	}
	f.Write(data[:len(data)/2])
	if o := await(t, ch); o != (outcome{"copy.tar.gz", "waiting"}) {
		t.Fatalf("got %v, want copy.tar.gz waiting", o)
	}
	f.Write(data[len(data)/2:])
	f.Close()
	if o := await(t, ch); o != (outcome{"copy.tar.gz", "done"}) {
		t.Fatalf("got %v, want copy.tar.gz done", o)
	}
	if n := len(a.events(t, audit.BundleRejected)); n != 0 {
		t.Errorf("%d BUNDLE_REJECTED events for a copy in progress", n)
	}
}

// A truncated file that has not changed for the settle time is not a copy
// in progress: it is refused, audited once, and moved to rejected/.
func TestInboxRefusesSettledTruncatedFile(t *testing.T) {
	key := newKey(t)
	a := newAgent(t, key)
	dir := filepath.Join(a.root, "inbox")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data := targz(t, craft(t, key, schema.Manifest{Version: 1}, docFiles(nil)))
	name := filepath.Join(dir, "half.tar.gz")
	if err := os.WriteFile(name, data[:len(data)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(name, old, old); err != nil {
		t.Fatal(err)
	}
	_, ch := startInbox(t, a)
	if o := await(t, ch); o != (outcome{"half.tar.gz", "rejected"}) {
		t.Fatalf("got %v, want half.tar.gz rejected", o)
	}
	evs := a.events(t, audit.BundleRejected)
	if len(evs) != 1 || !strings.Contains(fmt.Sprint(evs[0].Details), "truncated") {
		t.Errorf("BUNDLE_REJECTED events: %+v; want one naming the truncation", evs)
	}
	reason, err := os.ReadFile(filepath.Join(dir, "rejected", "half.tar.gz.reason"))
	if err != nil || !strings.Contains(string(reason), "truncated") {
		t.Errorf("reason file: %q, %v", reason, err)
	}
}

// Entries that are not regular files (a symlink, a FIFO, a folder) are not
// skipped forever: each is moved to rejected/ with a reason and audited,
// without being opened or followed. A FIFO does not hang the inbox.
func TestInboxQuarantinesNonRegular(t *testing.T) {
	key := newKey(t)
	a := newAgent(t, key)
	dir := filepath.Join(a.root, "inbox")
	os.MkdirAll(dir, 0o700)
	victim := filepath.Join(t.TempDir(), "shadow")
	os.WriteFile(victim, []byte("secret"), 0o600)
	if err := os.Symlink(victim, filepath.Join(dir, "link.tar.gz")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.tar.gz"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "folder.tar.gz"), 0o700); err != nil {
		t.Fatal(err)
	}
	_, ch := startInbox(t, a)
	got := map[string]string{}
	for len(got) < 3 {
		o := await(t, ch)
		got[o.name] = o.what
	}
	// And one arriving while the inbox runs.
	if err := syscall.Mkfifo(filepath.Join(dir, "late.tar.gz"), 0o600); err != nil {
		t.Fatal(err)
	}
	o := await(t, ch)
	got[o.name] = o.what
	for _, name := range []string{"link.tar.gz", "fifo.tar.gz", "folder.tar.gz", "late.tar.gz"} {
		if got[name] != "rejected" {
			t.Errorf("%s: %q; want rejected", name, got[name])
		}
		if _, err := os.Lstat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s still in the inbox: %v", name, err)
		}
		reason, err := os.ReadFile(filepath.Join(dir, "rejected", name+".reason"))
		if err != nil || !strings.Contains(string(reason), "not a regular file") {
			t.Errorf("rejected/%s.reason = %q, %v", name, reason, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dir, "rejected", "link.tar.gz")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("rejected/link.tar.gz: %v, %v; want the symlink itself, moved", fi, err)
	}
	if n := len(a.events(t, audit.BundleRejected)); n != 4 {
		t.Errorf("%d BUNDLE_REJECTED events; want 4", n)
	}
	// A following bundle still goes through.
	drop(t, dir, "ok.tar.gz", targz(t, craft(t, key, schema.Manifest{Version: 2}, docFiles(nil))))
	if o := await(t, ch); o != (outcome{"ok.tar.gz", "done"}) {
		t.Fatalf("got %v, want ok.tar.gz done", o)
	}
}

// The size is checked before reading: a file larger than any bundle is
// refused without being read into memory.
func TestInboxChecksSizeBeforeReading(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.tar.gz")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxUncompressed + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	st, _ := os.Lstat(path)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = readLimited(path, st)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTooBig) {
		t.Fatalf("readLimited of a %d-byte file: %v; want ErrTooBig", MaxUncompressed+1, err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Errorf("refusing it allocated %d bytes; want it refused before reading", grew)
	}
}

// readLimited reads a file sized by its stat, and all of it when it grew
// after the stat (the same file still), within the limit.
func TestReadLimitedSizes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := os.WriteFile(path, []byte("first part"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Lstat(path)
	if data, err := readLimited(path, st); err != nil || string(data) != "first part" {
		t.Fatalf("got %q, %v", data, err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(", and more written after the stat")
	f.Close()
	if data, err := readLimited(path, st); err != nil || string(data) != "first part, and more written after the stat" {
		t.Fatalf("grown: got %q, %v", data, err)
	}
}
