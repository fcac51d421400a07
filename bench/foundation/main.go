// Command foundation measures what an agent spends to take in a desired
// state: it validates N distinct ~400-byte policy documents with
// schema.ValidateMany, applies them as one generation to a fresh encrypted
// store (fsync on), and reports the time of each step and the peak resident
// set size (VmHWM from /proc/self/status).
//
//	go run ./bench/foundation -docs 10000
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"warden/bench/rss"
	"warden/schema"
	"warden/state"
)

func main() {
	n := flag.Int("docs", 10_000, "documents in the generation")
	reapply := flag.Int("changed", 10, "documents changed before a second validate+apply")
	flag.Parse()
	if err := run(*n, *reapply); err != nil {
		fmt.Fprintln(os.Stderr, "foundation:", err)
		os.Exit(1)
	}
}

func policy(i int, tag string) []byte {
	return fmt.Appendf(nil, `{"kind": "Policy", "id": "policy-%05d", "spec": {
  "name": "Developers may elevate package tools %d%s", "type": "PrivilegeElevation",
  "status": "enforce", "priority": %d, "controls": ["allow", "justification"],
  "durationSeconds": 900,
  "filters": {"users": ["*"], "groups": ["developers", "ops"], "machines": ["ws-*"],
              "applications": [{"path": "/usr/bin/apt*", "commandLine": "apt install *"}]}}}`,
		i, i, tag, i%10000)
}

func run(n, changed int) error {
	dir, err := os.MkdirTemp("", "warden-foundation-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	files := make([]schema.File, n)
	size := 0
	for i := range files {
		files[i] = schema.File{Name: fmt.Sprintf("policies/policy-%05d.json", i), Data: policy(i, "")}
		size += len(files[i].Data)
	}
	fmt.Printf("documents: %d, %.0f bytes each on average, GOMAXPROCS %d\n", n, float64(size)/float64(n), runtime.GOMAXPROCS(0))

	t0 := time.Now()
	docs, err := schema.ValidateMany(files)
	if err != nil {
		return err
	}
	tValidate := time.Since(t0)
	hwmValidate := procStatus("VmHWM:")
	if os.Getenv("FOUNDATION_HEAP") != "" {
		runtime.GC()
		f, _ := os.Create(os.Getenv("FOUNDATION_HEAP"))
		pprof.WriteHeapProfile(f)
		f.Close()
	}

	s, err := state.Open(filepath.Join(dir, "KeeperStorage"), state.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	t1 := time.Now()
	if _, err := s.ApplyGeneration(state.Apply{Source: "bench", Docs: docs}); err != nil {
		return err
	}
	tApply := time.Since(t1)
	fmt.Printf("validate: %v (%.0f docs/s), peak RSS so far %s\napply:    %v (%.0f docs/s)\n",
		tValidate.Round(time.Millisecond), float64(n)/tValidate.Seconds(), hwmValidate,
		tApply.Round(time.Millisecond), float64(n)/tApply.Seconds())

	// Re-apply with a few changes: only those are validated again.
	for i := 0; i < changed && i < n; i++ {
		k := i * (n / max(changed, 1))
		files[k].Data = policy(k, " (changed)")
	}
	t2 := time.Now()
	docs, err = schema.ValidateMany(files)
	if err != nil {
		return err
	}
	tRevalidate := time.Since(t2)
	t3 := time.Now()
	if _, err := s.ApplyGeneration(state.Apply{Source: "bench", Docs: docs}); err != nil {
		return err
	}
	fmt.Printf("re-validate with %d changed: %v\nre-apply: %v\n", changed,
		tRevalidate.Round(time.Millisecond), time.Since(t3).Round(time.Millisecond))

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Printf("Go heap in use: %d MB, total allocated: %d MB\n", ms.HeapInuse>>20, ms.TotalAlloc>>20)
	hwm, rss := procStatus("VmHWM:"), procStatus("VmRSS:")
	fmt.Printf("peak RSS (VmHWM): %s\ncurrent RSS (VmRSS): %s\n", hwm, rss)
	return nil
}

func procStatus(field string) string {
	v, err := rss.Field(field)
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return v
}
