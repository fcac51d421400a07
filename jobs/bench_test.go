package jobs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"warden/audit"
	"warden/procgroup"
	"warden/schema"
	"warden/state"
)

// benchScheduler is a scheduler on the wall clock with nJobs applied.
func benchScheduler(b *testing.B, docs ...string) (*Scheduler, *audit.Writer, chan time.Time) {
	b.Helper()
	return benchSchedulerWith(b, nil, docs...)
}

func benchSchedulerWith(b *testing.B, tune func(*Options), docs ...string) (*Scheduler, *audit.Writer, chan time.Time) {
	b.Helper()
	root := b.TempDir()
	os.Mkdir(filepath.Join(root, "Jobs"), 0o750)
	st, err := state.Open(filepath.Join(root, "KeeperStorage"), state.Options{})
	if err != nil {
		b.Fatal(err)
	}
	w, err := audit.NewWriter(st, audit.Options{Machine: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	var ds []*schema.Document
	for _, raw := range docs {
		d, err := schema.Validate("job.json", []byte(raw))
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, d)
	}
	if _, err := st.ApplyGeneration(state.Apply{Source: "local", Docs: ds}); err != nil {
		b.Fatal(err)
	}
	o := Options{Root: root, Store: st, Audit: w, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if tune != nil {
		tune(&o)
	}
	s, err := New(o)
	if err != nil {
		b.Fatal(err)
	}
	started := make(chan time.Time, 1)
	s.hooks.taskStarted = func(string, int, int) { started <- time.Now() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	<-s.ready
	b.Cleanup(func() {
		cancel()
		<-done
		w.Close()
		st.Close()
	})
	return s, w, started
}

func reportLatency(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "ms-p99")
}

// BenchmarkTriggerToRunning measures a manual trigger (RunNow) to the
// task's process running (fork and exec done), with 1,000 scheduled jobs
// registered beside it.
func BenchmarkTriggerToRunning(b *testing.B) {
	docs := thousandJobs(time.Now())
	docs = append(docs, jobDoc("now", `{"concurrency": "allow", "trigger": {}, "tasks": [{"command": "/bin/true"}]}`))
	s, _, started := benchScheduler(b, docs...)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t := time.Now()
		if _, err := s.RunNow("now", "bench"); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, (<-started).Sub(t))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkEventToRunning measures an audit event (from the moment Write
// returns, the event stored) to the process of the job it triggers running.
func BenchmarkEventToRunning(b *testing.B) {
	s, w, started := benchScheduler(b, jobDoc("ev", `{"concurrency": "allow", "trigger": {"events": ["BundleApplied"], "eventCooldownSeconds": 0}, "tasks": [{"command": "/bin/true"}]}`))
	_ = s
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(context.Background(), audit.Event{Type: audit.BundleApplied, Component: "bench"}); err != nil {
			b.Fatal(err)
		}
		t := time.Now()
		lat = append(lat, (<-started).Sub(t))
		// The guard ignores events while a run is going: wait for it to end.
		for {
			s.mu.Lock()
			busy := len(s.jobs["ev"].active) > 0
			s.mu.Unlock()
			if !busy {
				break
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// thousandJobs are 1,000 daily jobs spread over the day, none due within
// the next hours from now.
func thousandJobs(now time.Time) []string {
	out := make([]string, 0, 1000)
	for i := 0; i < 1000; i++ {
		hour := (now.UTC().Hour() + 6 + i%12) % 24
		out = append(out, jobDoc(fmt.Sprintf("job-%04d", i), fmt.Sprintf(
			`{"priority": %d, "trigger": {"schedule": "%d %d * * *", "timeZone": "UTC"}, "tasks": [{"command": "/bin/true"}]}`,
			1+i%10, i%60, hour)))
	}
	return out
}

// BenchmarkTaskContainment measures one run of a /bin/true task from
// RunNow to the run ended (its process group killed and waited for, its
// record written), by how the task is contained: its process group only,
// or also a cgroup of its own (mkdir, clone into it, cgroup.kill, rmdir).
// It reports the start (RunNow to the process running) and the whole run.
func BenchmarkTaskContainment(b *testing.B) {
	for _, mode := range []string{"process-group", "cgroup"} {
		b.Run(mode, func(b *testing.B) {
			var cg *procgroup.Cgroups
			if mode == "cgroup" {
				var err error
				if cg, err = procgroup.OpenCgroups(b.TempDir()); err != nil {
					b.Skipf("no writable cgroup v2: %v", err)
				}
				b.Cleanup(func() { cg.Close() })
			}
			s, _, started := benchSchedulerWith(b, func(o *Options) { o.Cgroups = cg },
				jobDoc("now", `{"concurrency": "forbid", "trigger": {}, "tasks": [{"command": "/bin/true"}]}`))
			start := make([]time.Duration, 0, b.N)
			whole := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t := time.Now()
				if _, err := s.RunNow("now", "bench"); err != nil {
					b.Fatal(err)
				}
				start = append(start, (<-started).Sub(t))
				for {
					s.mu.Lock()
					busy := len(s.jobs["now"].active) > 0
					s.mu.Unlock()
					if !busy {
						break
					}
					time.Sleep(50 * time.Microsecond)
				}
				whole = append(whole, time.Since(t))
			}
			b.StopTimer()
			sort.Slice(start, func(i, j int) bool { return start[i] < start[j] })
			sort.Slice(whole, func(i, j int) bool { return whole[i] < whole[j] })
			b.ReportMetric(float64(start[len(start)/2].Microseconds())/1000, "ms-start-p50")
			b.ReportMetric(float64(whole[len(whole)/2].Microseconds())/1000, "ms-run-p50")
		})
	}
}
