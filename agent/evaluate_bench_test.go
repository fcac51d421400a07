package agent

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkEvaluateAPI is POST /api/v1/evaluate over mTLS against an
// in-process agent with no policy (every answer a default deny), each
// decision audited as always: the agent's own cost per decision, for
// profiles (-cpuprofile). bench/e2e and bench/opa/rest drive the real
// binary for the figures docs/benchmarks.md quotes.
func BenchmarkEvaluateAPI(b *testing.B) {
	root := b.TempDir()
	_, info := startAgent(b, root)
	c := adminClient(b, root)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	body := []byte(`{"user": "erin", "groups": ["staff"], "machine": "ws-17", "sessionId": "s-1", "action": "elevate", "application": {"path": "/usr/bin/vim"}}`)
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest("POST", "https://"+info.API+"/api/v1/evaluate", bytes.NewReader(body))
			req.Host = "localhost"
			req.Header.Set("Content-Type", "application/json")
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
