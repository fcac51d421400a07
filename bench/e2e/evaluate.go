package main

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

var (
	evalConns = flag.Int("eval-conns", 32, "concurrent evaluate clients")
	evalFor   = flag.Duration("eval-for", 5*time.Second, "how long each evaluate run lasts")
)

// benchEvaluate: POST /api/v1/evaluate over mTLS from --eval-conns
// clients, with every decision audited (stored and published) as always,
// on an agent holding 1,000 policies.
func benchEvaluate() {
	a := startAgent(nil)
	defer a.stop()
	docs, err := os.MkdirTemp("", "warden-e2e-docs-")
	check(err)
	writeDocs(docs, 1000, 0, 1)
	a.applyOne(a.build(docs, 1), 1, 1001)
	os.RemoveAll(docs)
	var rates []float64
	var lat []time.Duration
	for r := 0; r < *runs; r++ {
		var mu sync.Mutex
		var wg sync.WaitGroup
		done := 0
		stop := time.Now().Add(*evalFor)
		t0 := time.Now()
		for c := 0; c < *evalConns; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				req := evalRequest(c)
				var mine []time.Duration
				for time.Now().Before(stop) {
					s := time.Now()
					code, err := a.call("POST", "/api/v1/evaluate", req, nil)
					if err != nil || code != 200 {
						fail("evaluate: %d %v", code, err)
					}
					mine = append(mine, time.Since(s))
				}
				mu.Lock()
				done += len(mine)
				lat = append(lat, mine...)
				mu.Unlock()
			}(c)
		}
		wg.Wait()
		rate := float64(done) / time.Since(t0).Seconds()
		rates = append(rates, rate)
		fmt.Printf("  run %d: %.0f decisions/s\n", r+1, rate)
	}
	slices.Sort(rates)
	fmt.Printf("evaluate over mTLS, %d clients, audit on: median %.0f decisions/s; latency %s\n",
		*evalConns, rates[len(rates)/2], summarize(lat))
}

// evalRequest is what client c asks POST /api/v1/evaluate, every time.
func evalRequest(c int) map[string]any {
	return map[string]any{"user": fmt.Sprintf("user-%d", c), "groups": []string{"developers"},
		"machine": "ws-1", "sessionId": fmt.Sprintf("s-%d", c), "action": "elevate",
		"application": map[string]any{"path": toolFor(c)}}
}

// toolFor is client c's program: every other client asks for a tool one
// policy covers (justification asked), the others for one none does.
func toolFor(c int) string {
	if c%2 == 0 {
		return fmt.Sprintf("/usr/bin/tool-%d-x", c*7)
	}
	return fmt.Sprintf("/usr/bin/vim%d", c)
}
