package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// benchApply: a bundle of --docs policies dropped into the inbox of a
// fresh agent, then the same bundle with --changed policies changed.
// For each it measures drop to the engine deciding by the new generation
// (an evaluate that only the new sentinel policy allows) and drop to the
// last materialized file written (the newest mtime in policies/), and
// counts the files written.
func benchApply() {
	var first, firstFiles, next, nextFiles, firstCPU, nextCPU []time.Duration
	var ratios, cpuRatios []float64
	var wroteFirst, wroteNext int
	for r := 0; r < *runs; r++ {
		a := startAgent(nil)
		docs, err := os.MkdirTemp("", "warden-e2e-docs-")
		check(err)
		writeDocs(docs, *ndocs-2, 0, 1) // with the sentinel and Settings: --docs documents
		b1 := a.build(docs, 1)
		writeDocs(docs, *changed, 2, 2) // the first --changed policies, and the sentinel
		b2 := a.build(docs, 2)
		os.RemoveAll(docs)

		d, f, w, c := a.applyOne(b1, 1, *ndocs-1)
		first, firstFiles, firstCPU = append(first, d), append(firstFiles, f), append(firstCPU, c)
		wroteFirst = w
		// The first apply goes on after its files are written (the files
		// ledger syncs them); measure the next one on an idle agent.
		a.waitIdle()
		d2, f2, w2, c2 := a.applyOne(b2, 2, *changed+1)
		next, nextFiles, nextCPU = append(next, d2), append(nextFiles, f2), append(nextCPU, c2)
		wroteNext = w2
		ratios = append(ratios, float64(d2)/float64(d))
		cpuRatios = append(cpuRatios, float64(c2)/float64(c))
		rss := a.PeakRSS()
		a.stop()
		fmt.Printf("  run %d: first %s / %s files, %d changed %s / %s files, ratio %.1f%%; agent CPU to the decision %s and %s (%.1f%%); agent peak RSS %s\n", r+1,
			d.Round(time.Millisecond), f.Round(time.Millisecond), *changed, d2.Round(time.Millisecond), f2.Round(time.Millisecond),
			100*float64(d2)/float64(d), c.Round(time.Millisecond), c2.Round(time.Millisecond), 100*float64(c2)/float64(c), rss)
	}
	fmt.Printf("apply %d documents, inbox drop to decision by the new generation: %s\n", *ndocs, summarize(first))
	fmt.Printf("apply %d documents, inbox drop to last file written (%d written): %s\n", *ndocs, wroteFirst, summarize(firstFiles))
	fmt.Printf("same bundle, %d changed, drop to decision: %s\n", *changed, summarize(next))
	fmt.Printf("same bundle, %d changed, drop to last file written (%d written): %s\n", *changed, wroteNext, summarize(nextFiles))
	fmt.Printf("agent CPU, drop to decision, first apply: %s\n", summarize(firstCPU))
	fmt.Printf("agent CPU, drop to decision, %d changed: %s\n", *changed, summarize(nextCPU))
	slices.Sort(ratios)
	slices.Sort(cpuRatios)
	fmt.Printf("ratio changed/first (drop to decision), median of runs: %.1f%% (agent CPU: %.1f%%)\n", 100*ratios[len(ratios)/2], 100*cpuRatios[len(cpuRatios)/2])
}

// applyOne drops bundle (version v) and waits for the sentinel decision,
// then for the files; want is how many files the apply must write. cpu is
// the agent's CPU time from the drop to the decision (with whatever else
// the agent does meanwhile, the benchmark's own status and evaluate calls
// included).
func (a *agentProc) applyOne(bundle string, v, want int) (decided, written time.Duration, wrote int, cpu time.Duration) {
	app := fmt.Sprintf("/usr/bin/e2e-v%d", v)
	req := map[string]any{"user": "e2e-user", "groups": []string{"e2e"}, "machine": "e2e", "sessionId": "e2e",
		"action": "elevate", "application": map[string]any{"path": app}}
	cpu0 := a.CPUTime()
	t0 := a.drop(bundle)
	// Wait for the generation before asking for decisions: denials while
	// it is applied would count against the circuit breaker.
	waitFor(10*time.Minute, "bundle version "+fmt.Sprint(v), func() bool {
		var st struct{ BundleVersion int }
		code, err := a.call("GET", "/api/v1/status", nil, &st)
		return err == nil && code == 200 && st.BundleVersion >= v
	})
	waitFor(10*time.Minute, "decision by generation "+fmt.Sprint(v), func() bool {
		var ans struct{ Decision string }
		code, err := a.call("POST", "/api/v1/evaluate", req, &ans)
		return err == nil && code == 200 && ans.Decision == "allow"
	})
	decided = time.Since(t0)
	cpu = a.CPUTime() - cpu0
	dir := filepath.Join(a.Root, "policies")
	sentinel := filepath.Join(dir, "e2e-sentinel.json")
	waitFor(10*time.Minute, "files of generation "+fmt.Sprint(v), func() bool {
		data, err := os.ReadFile(sentinel)
		if err != nil || !strings.Contains(string(data), app) {
			return false
		}
		n, newest := newer(dir, t0)
		if n < want {
			return false
		}
		written, wrote = newest.Sub(t0), n
		return true
	})
	// Let the controller finish: anything written after we looked counts.
	time.Sleep(300 * time.Millisecond)
	n, newest := newer(dir, t0)
	return decided, max(written, newest.Sub(t0)), n, cpu
}

// waitIdle returns once the agent used under 5 ms of CPU in 250 ms, or
// after two minutes.
func (a *agentProc) waitIdle() {
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		c0 := a.CPUTime()
		time.Sleep(250 * time.Millisecond)
		if a.CPUTime()-c0 < 5*time.Millisecond {
			return
		}
	}
}

// newer counts the files in dir modified at or after t0 and returns the
// newest modification time.
func newer(dir string, t0 time.Time) (int, time.Time) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, t0
	}
	n, newest := 0, t0
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || fi.ModTime().Before(t0) {
			continue
		}
		n++
		if fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	return n, newest
}

// writeDocs writes policies 0..n-1 with the given tag, the sentinel policy
// of version v, and Settings that let the benchmark poll without being
// rate limited.
func writeDocs(dir string, n, tag, v int) {
	check(os.MkdirAll(filepath.Join(dir, "policies"), 0o755))
	for i := 0; i < n; i++ {
		doc := fmt.Sprintf(`{"kind": "Policy", "id": "p-%05d", "spec": {
  "name": "Developers may elevate package tools %d (%d)", "type": "PrivilegeElevation",
  "status": "enforce", "priority": %d, "controls": ["allow", "justification"],
  "durationSeconds": 900,
  "filters": {"users": ["*"], "groups": ["developers", "ops"], "machines": ["ws-*"],
              "applications": [{"path": "/usr/bin/tool-%d*"}]}}}`, i, i, tag, i%1000, i)
		check(os.WriteFile(filepath.Join(dir, "policies", fmt.Sprintf("p-%05d.json", i)), []byte(doc), 0o644))
	}
	sentinel := fmt.Sprintf(`{"kind": "Policy", "id": "e2e-sentinel", "spec": {"name": "e2e sentinel",
  "type": "PrivilegeElevation", "status": "enforce", "priority": 5000, "controls": ["allow"],
  "filters": {"users": ["e2e-user"], "applications": [{"path": "/usr/bin/e2e-v%d"}]}}}`, v)
	check(os.WriteFile(filepath.Join(dir, "policies", "e2e-sentinel.json"), []byte(sentinel), 0o644))
	settings := `{"kind": "Settings", "id": "agent", "spec": {"allowedHosts": ["localhost", "127.0.0.1"],
  "rateLimit": {"perMinute": 1000000, "queue": 1000}, "circuitBreaker": {"failures": 10000, "openSeconds": 1}}}`
	check(os.WriteFile(filepath.Join(dir, "settings.json"), []byte(settings), 0o644))
}
