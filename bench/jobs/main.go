// Command jobs measures the job scheduler's idle overhead: 1,000 jobs with
// cron schedules registered, none due during the window, and the CPU time
// (user + system, getrusage) the whole process spends over that window,
// as a share of one core. A baseline window with the same store and audit
// writer but no scheduler is measured first, so the difference is the
// scheduler's.
//
//	go run ./bench/jobs [-jobs 1000] [-window 60s]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"warden/audit"
	"warden/jobs"
	"warden/schema"
	"warden/state"
)

func main() {
	n := flag.Int("jobs", 1000, "jobs to register")
	window := flag.Duration("window", 60*time.Second, "idle window to measure")
	flag.Parse()

	root, err := os.MkdirTemp("", "warden-bench-jobs-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	os.Mkdir(filepath.Join(root, "Jobs"), 0o750)
	st, err := state.Open(filepath.Join(root, "KeeperStorage"), state.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	w, err := audit.NewWriter(st, audit.Options{Machine: "bench"})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Close()

	now := time.Now().UTC()
	docs := make([]*schema.Document, 0, *n)
	for i := 0; i < *n; i++ {
		// Daily schedules spread over minutes and hours, none in the next
		// six hours: the window is idle by construction.
		hour := (now.Hour() + 6 + i%12) % 24
		raw := fmt.Sprintf(`{"kind": "Job", "id": "job-%04d", "spec": {"priority": %d, "trigger": {"schedule": "%d %d * * *", "timeZone": "UTC"}, "tasks": [{"command": "/bin/true"}]}}`,
			i, 1+i%10, i%60, hour)
		d, err := schema.Validate("job.json", []byte(raw))
		if err != nil {
			log.Fatal(err)
		}
		docs = append(docs, d)
	}
	if _, err := st.ApplyGeneration(state.Apply{Source: "local", Docs: docs}); err != nil {
		log.Fatal(err)
	}

	runtime.GC()
	base := measure(*window)
	fmt.Printf("baseline (store + audit writer, no scheduler): %s\n", base)

	s, err := jobs.New(jobs.Options{Root: root, Store: st, Audit: w, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t0 := time.Now()
	go func() { s.Run(ctx); close(done) }()
	for len(s.List()) < *n || s.List()[0].NextRun == nil {
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("registered %d jobs in %s\n", *n, time.Since(t0).Round(time.Millisecond))
	runtime.GC()
	time.Sleep(time.Second) // let registration's writes settle
	idle := measure(*window)
	fmt.Printf("scheduler idle with %d jobs:                 %s\n", *n, idle)
	cancel()
	<-done
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("heap in use at the end: %d KiB\n", ms.HeapInuse>>10)
}

type sample struct {
	cpu, wall time.Duration
}

func (s sample) String() string {
	return fmt.Sprintf("%v CPU over %v = %.4f%% of one core", s.cpu, s.wall.Round(time.Millisecond), 100*s.cpu.Seconds()/s.wall.Seconds())
}

func measure(window time.Duration) sample {
	c0, w0 := cpuTime(), time.Now()
	time.Sleep(window)
	return sample{cpu: cpuTime() - c0, wall: time.Since(w0)}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
