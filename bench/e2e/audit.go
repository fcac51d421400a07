package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// benchAudit: decisions over the API for --eval-for with everything that
// follows an audit append in the real agent switched on: a live admin
// subscriber on the MQTT topic AuditMessage and forwarding to an NDJSON
// file (Settings audit.forward). It reports decisions per second, the
// time from an event's creation to its delivery on MQTT, and how long
// the forwarded file takes to hold the last event once the load stops.
func benchAudit() {
	a := startAgent(nil)
	defer a.stop()
	out := filepath.Join(a.Root, "..", filepath.Base(a.Root)+"-siem.ndjson")
	defer os.Remove(out)
	docs, err := os.MkdirTemp("", "warden-e2e-docs-")
	check(err)
	writeDocs(docs, 100, 0, 1)
	settings := fmt.Sprintf(`{"kind": "Settings", "id": "agent", "spec": {"allowedHosts": ["localhost", "127.0.0.1"],
  "rateLimit": {"perMinute": 1000000, "queue": 1000}, "circuitBreaker": {"failures": 10000, "openSeconds": 1},
  "audit": {"forward": [{"type": "file", "path": %q}]}}}`, out)
	check(os.WriteFile(filepath.Join(docs, "settings.json"), []byte(settings), 0o644))
	a.applyOne(a.build(docs, 1), 1, 101)
	os.RemoveAll(docs)

	var mu sync.Mutex
	var delays []time.Duration
	var lastSeq atomic.Uint64
	c := a.subscribeRaw("AuditMessage", func(payload []byte) {
		var ev struct {
			Seq  uint64    `json:"seq"`
			Time time.Time `json:"time"`
		}
		if json.Unmarshal(payload, &ev) == nil && !ev.Time.IsZero() {
			d := time.Since(ev.Time)
			mu.Lock()
			delays = append(delays, d)
			mu.Unlock()
			lastSeq.Store(max(lastSeq.Load(), ev.Seq))
		}
	})
	defer c.Disconnect(&paho.Disconnect{})

	n := evaluateLoad(a, *evalConns, *evalFor)
	stopped := time.Now()
	rate := float64(n) / evalFor.Seconds()
	var st struct {
		AuditForward []struct {
			Cursor uint64 `json:"cursor"`
			Lag    uint64 `json:"lag"`
		} `json:"auditForward"`
	}
	waitFor(time.Minute, "forwarding caught up", func() bool {
		code, err := a.call("GET", "/api/v1/status", nil, &st)
		return err == nil && code == 200 && len(st.AuditForward) == 1 && st.AuditForward[0].Lag == 0
	})
	caught := time.Since(stopped)
	lines := countLines(out)
	mu.Lock()
	s := summarize(delays)
	mu.Unlock()
	fmt.Printf("audit with a live AuditMessage subscriber and file forwarding: %.0f decisions/s (%d clients), %d events forwarded\n", rate, *evalConns, lines)
	fmt.Printf("event created to delivered on MQTT AuditMessage: %s\n", s)
	fmt.Printf("load stopped to forwarding caught up (status lag 0): %s\n", caught.Round(time.Millisecond))
}

// evaluateLoad keeps conns evaluate requests in flight for d and returns
// how many completed.
func evaluateLoad(a *agentProc, conns int, d time.Duration) int {
	var done atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			req := evalRequest(c)
			for time.Now().Before(stop) {
				code, err := a.call("POST", "/api/v1/evaluate", req, nil)
				if err != nil || code != 200 {
					fail("evaluate: %d %v", code, err)
				}
				done.Add(1)
			}
		}(c)
	}
	wg.Wait()
	return int(done.Load())
}

func countLines(path string) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(`"seq"`)) {
			n++
		}
	}
	return n
}
