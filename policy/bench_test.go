package policy_test

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"testing"
	"time"

	"warden/policy"
	"warden/policy/policytest"
	"warden/schema"
)

var now = time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)

func compileSynthetic(tb testing.TB, n int) *policy.Index {
	tb.Helper()
	ix, err := policy.Compile(policytest.Policies(n))
	if err != nil {
		tb.Fatal(err)
	}
	return ix
}

// BenchmarkEvaluate measures one decision against n compiled policies, for
// a mix of matching and non-matching requests, and reports the p50 and p99
// of the per-decision latencies it recorded (each includes the cost of
// reading the clock twice, some tens of ns).
func BenchmarkEvaluate(b *testing.B) {
	for _, n := range []int{100, 1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			ix := compileSynthetic(b, n)
			reqs := policytest.Requests(n, 4096, 1)
			lat := make([]time.Duration, b.N) // b.N, not b.Loop: the recording must not allocate in the loop
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				t0 := time.Now()
				ix.Evaluate(reqs[i%len(reqs)], now)
				lat[i] = time.Since(t0)
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*50/100].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// BenchmarkEvaluateNoMatch is the hot path of a request no policy matches.
func BenchmarkEvaluateNoMatch(b *testing.B) {
	for _, n := range []int{100, 10_000, 100_000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			ix := compileSynthetic(b, n)
			req := policytest.NoMatch()
			b.ReportAllocs()
			for b.Loop() {
				ix.Evaluate(req, now)
			}
		})
	}
}

// BenchmarkCompile measures compiling 10,000 policies (from validated
// specs: CUE validation is schema's cost, paid once per document).
func BenchmarkCompile(b *testing.B) {
	docs := policytest.Policies(10_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.Compile(docs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompileChanged10 measures compiling the next generation of
// 10,000 policies in which 10 changed: documents carry content hashes, as
// validated ones do, so the 9,990 unchanged policies come from the memo.
// BenchmarkCompile above (documents without hashes) is the cold cost.
func BenchmarkCompileChanged10(b *testing.B) {
	docs := policytest.Policies(10_000)
	for i, d := range docs {
		d.Hash = sha256.Sum256(fmt.Appendf(nil, "%d base", i))
	}
	if _, err := policy.Compile(docs); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	gen := 0
	for b.Loop() {
		gen++
		next := slices.Clone(docs)
		for i := range 10 {
			d := *docs[i*1000]
			d.Hash = sha256.Sum256(fmt.Appendf(nil, "%d gen %d", i, gen))
			next[i*1000] = &d
		}
		if _, err := policy.Compile(next); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecompileChanged10 is BenchmarkCompileChanged10 the way the
// engine loads a generation: from the index in force (policy.Recompile),
// one of the 10 changed policies with another application path, so the
// buckets are patched rather than shared.
func BenchmarkRecompileChanged10(b *testing.B) {
	docs := policytest.Policies(10_000)
	for i, d := range docs {
		d.Hash = sha256.Sum256(fmt.Appendf(nil, "%d base", i))
	}
	ix, err := policy.Compile(docs)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	gen := 0
	for b.Loop() {
		gen++
		next := slices.Clone(docs)
		for i := range 10 {
			d := *docs[i*1000]
			d.Hash = sha256.Sum256(fmt.Appendf(nil, "%d gen %d", i, gen))
			if i == 0 {
				s := *d.Policy()
				s.Filters.Applications = []schema.ApplicationFilter{{Path: fmt.Sprintf("/opt/gen-%d/*", gen)}}
				d.Spec = &s
			}
			next[i*1000] = &d
		}
		if ix, err = policy.Recompile(ix, next); err != nil {
			b.Fatal(err)
		}
		docs = next
	}
}

// TestNoMatchAllocatesNothing: the hot path of a request no policy matches
// allocates nothing, variables in patterns included.
func TestNoMatchAllocatesNothing(t *testing.T) {
	docs := policytest.Policies(10_000)
	for i, p := range []string{"${HOME}/bin/*", "/home/${USER}/**", "/usr/bin/${MACHINE}-*", "/usr/**/vim?"} {
		s := &schema.PolicySpec{Name: "v", Type: "PrivilegeElevation", Status: "enforce", Controls: []string{"allow"},
			Filters: schema.Filters{Applications: []schema.ApplicationFilter{{Path: p}}, Folders: []string{"${HOME}"}}}
		docs = append(docs, &schema.Document{Kind: schema.KindPolicy, ID: fmt.Sprintf("var-%d", i), Spec: s})
	}
	ix, err := policy.Compile(docs)
	if err != nil {
		t.Fatal(err)
	}
	req := policytest.NoMatch()
	if d := ix.Evaluate(req, now); d.Policy != "" || d.Effective != policy.Deny {
		t.Fatalf("the no-match request matched: %+v", d)
	}
	if n := testing.AllocsPerRun(1000, func() { ix.Evaluate(req, now) }); n != 0 {
		t.Errorf("Evaluate of a non-matching request allocates %.1f times, want 0", n)
	}
}
