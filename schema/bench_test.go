package schema

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// policyDoc returns a Policy document of about 400 bytes, distinct for each
// n so that the cache never serves it.
func policyDoc(n int) []byte {
	return fmt.Appendf(nil, `{"kind": "Policy", "id": "bench-policy-%d", "spec": {
  "name": "Developers may elevate package tools %d", "type": "PrivilegeElevation",
  "status": "enforce", "priority": %d, "controls": ["allow", "justification"],
  "durationSeconds": 900,
  "filters": {"users": ["*"], "groups": ["developers", "ops"], "machines": ["ws-*"],
              "applications": [{"path": "/usr/bin/apt*", "commandLine": "apt install *"}],
              "time": {"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "18:00"}}}}`,
		n, n, n%10000)
}

func resetCache() {
	cache.mu.Lock()
	cache.m = map[[32]byte]*Document{}
	cache.mu.Unlock()
}

var benchSeq atomic.Int64

// BenchmarkValidate measures cold validation (every document new to the
// cache) of ~400-byte policies. Run with -cpu=1 for one core; docs/s is
// reported per run.
func BenchmarkValidate(b *testing.B) {
	docs := make([][]byte, 4096)
	base := int(benchSeq.Add(1)) << 32
	for i := range docs {
		docs[i] = policyDoc(base + i)
	}
	// Warm the validator pool so compiling the schema is not measured.
	Validate("warm.json", policyDoc(-1))
	b.SetBytes(int64(len(docs[0])))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%len(docs) == 0 {
			b.StopTimer()
			resetCache()
			b.StartTimer()
		}
		if _, err := Validate("p.json", docs[i%len(docs)]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}
