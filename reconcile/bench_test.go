package reconcile

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// BenchmarkTamperRestore measures the time from a tampering write to the
// file being put back (the rename of the restored file into place, seen by
// an independent fsnotify watcher), one tamper at a time.
//
//	go test -run '^$' -bench TamperRestore -benchtime 500x ./reconcile/
func BenchmarkTamperRestore(b *testing.B) {
	e := newEnv(b, nil)
	e.start()
	docs := policies(b, 100)
	e.apply(docs...)
	e.waitFor("materialized", func() bool { return readFile(e.path("policies/p-00099.json")) != "" })
	e.waitQuiet()

	w, err := fsnotify.NewBufferedWatcher(1024)
	must(b, err)
	defer w.Close()
	must(b, w.Add(e.path("policies")))

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		d := docs[i%len(docs)]
		p := e.path("policies/" + d.ID + ".json")
		start := time.Now()
		must(b, os.WriteFile(p, []byte("tampered"), 0o600))
		for restored := false; !restored; {
			select {
			case ev := <-w.Events:
				restored = ev.Name == p && ev.Has(fsnotify.Create) && readFile(p) == string(d.Raw)
			case err := <-w.Errors:
				b.Fatal(err)
			case <-time.After(10 * time.Second):
				b.Fatalf("%s not restored", p)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	e.waitQuiet()
}

// BenchmarkResync10k measures a full resync of 10,000 materialized
// policies with nothing drifted, and fails if the resync writes anything:
// "stat" trusts the stat cache (the resync after an applied generation or
// an inotify overflow), "content" reads and hashes every file first (the
// periodic resync, once every ResyncInterval).
//
//	go test -run '^$' -bench Resync10k -benchtime 10x ./reconcile/
func BenchmarkResync10k(b *testing.B) {
	const n = 10_000
	e := newEnv(b, nil)
	e.timeout = 5 * time.Minute // 10,000 fsynced writes on a busy machine
	e.start()
	e.apply(policies(b, n)...)
	last := e.path(fmt.Sprintf("policies/p-%05d.json", n-1))
	e.waitFor("materialized", func() bool { return readFile(last) != "" })
	e.waitQuiet()
	time.Sleep(200 * time.Millisecond) // past the stat cache's racy window
	e.m.Resync()                       // let the cache learn the files
	e.waitFor("warm", func() bool { return e.count(FilesController) >= 2*n })
	e.waitQuiet()
	writes := totalWrites(b, e)
	mtime := modTime(b, last)

	for _, verify := range []bool{false, true} {
		name := map[bool]string{false: "stat", true: "content"}[verify]
		b.Run(name, func(b *testing.B) {
			for range b.N {
				before := e.count(FilesController)
				if verify {
					e.m.files.forgetStats()
				}
				e.m.Resync()
				for e.count(FilesController) < before+n+1 || !e.m.quiet() {
					time.Sleep(100 * time.Microsecond)
				}
			}
			b.StopTimer()
			if got := totalWrites(b, e); got != writes {
				b.Fatalf("resync wrote: %v changes", got-writes)
			}
			if modTime(b, last) != mtime {
				b.Fatal("resync rewrote a file")
			}
			b.ReportMetric(float64(n), "files")
		})
	}
}

func modTime(b testing.TB, p string) time.Time {
	fi, err := os.Stat(filepath.Clean(p))
	must(b, err)
	return fi.ModTime()
}

// BenchmarkLedger10k measures the files ledger with 10,000 paths: the store
// write that follows a burst of file changes, and the read at every start.
//
//	go test -run '^$' -bench Ledger10k ./reconcile/
func BenchmarkLedger10k(b *testing.B) {
	e := newEnv(b, nil)
	f := e.m.files
	f.led.closed = true // no timed saves: the benchmark saves by hand
	for i := range 10_000 {
		f.noteWritten(fmt.Sprintf("policies/p-%05d.json", i), [32]byte{byte(i), byte(i >> 8)})
	}
	b.Run("save", func(b *testing.B) {
		for b.Loop() {
			f.led.mu.Lock()
			f.led.dirty = true
			f.led.mu.Unlock()
			f.saveLedger()
		}
	})
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			f.loadLedger()
		}
		if n := len(f.writtenPaths()); n != 10_000 {
			b.Fatalf("loaded %d paths, want 10000", n)
		}
	})
}
