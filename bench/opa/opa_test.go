package opa

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"warden/policy"
	"warden/policy/policytest"
)

const rules = 10_000

var now = time.Date(2025, 6, 2, 10, 0, 0, 0, time.UTC)

type engines struct {
	warden                    *policy.Index
	opa                       rego.PreparedEvalQuery
	reqs                      []*policy.Request
	inputs                    []ast.Value // the same requests, parsed for OPA once, as warden's are decoded once
	wardenCompile, opaPrepare time.Duration
}

func setup(tb testing.TB, n int) *engines {
	tb.Helper()
	docs := policytest.Policies(n)
	e := &engines{reqs: policytest.Requests(n, 2048, 1)}
	t0 := time.Now()
	ix, err := policy.Compile(docs)
	if err != nil {
		tb.Fatal(err)
	}
	e.warden, e.wardenCompile = ix, time.Since(t0)
	module, err := Rego(docs)
	if err != nil {
		tb.Fatal(err)
	}
	t0 = time.Now()
	e.opa, err = rego.New(rego.Query("data.warden.decision"), rego.Module("warden.rego", module)).PrepareForEval(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	e.opaPrepare = time.Since(t0)
	for _, r := range e.reqs {
		js, _ := json.Marshal(r)
		var m map[string]any
		if err := json.Unmarshal(js, &m); err != nil {
			tb.Fatal(err)
		}
		v, err := ast.InterfaceToValue(m)
		if err != nil {
			tb.Fatal(err)
		}
		e.inputs = append(e.inputs, v)
	}
	return e
}

func (e *engines) evalOPA(tb testing.TB, i int) (decision, pol string) {
	rs, err := e.opa.Eval(context.Background(), rego.EvalParsedInput(e.inputs[i]))
	if err != nil || len(rs) != 1 {
		tb.Fatalf("opa: %v %v", rs, err)
	}
	m := rs[0].Expressions[0].Value.(map[string]any)
	return m["decision"].(string), m["policy"].(string)
}

// TestSameDecisions: both engines answer every request alike, so the
// benchmark compares the same work.
func TestSameDecisions(t *testing.T) {
	e := setup(t, rules)
	matched := 0
	for i, r := range e.reqs {
		d := e.warden.Evaluate(r, now)
		dec, pol := e.evalOPA(t, i)
		if dec != d.Decision || pol != d.Policy {
			t.Fatalf("request %+v: warden %s by %q, OPA %s by %q", r, d.Decision, d.Policy, dec, pol)
		}
		if pol != "" {
			matched++
		}
	}
	if matched == 0 || matched == len(e.reqs) {
		t.Fatalf("%d of %d requests matched: the comparison needs both kinds", matched, len(e.reqs))
	}
	t.Logf("%d requests, %d matched a policy; compile: warden %v, OPA prepare %v", len(e.reqs), matched, e.wardenCompile, e.opaPrepare)
}

// BenchmarkSideBySide evaluates the same requests with warden and with
// OPA in one loop, alternating blocks of 256 requests (interleaving single
// requests would charge OPA's garbage collection and cache churn to
// warden), and reports both engines' mean, p50 and p99 and the ratios.
func BenchmarkSideBySide(b *testing.B) {
	e := setup(b, rules)
	w := make([]time.Duration, b.N)
	o := make([]time.Duration, b.N)
	const block = 256
	b.ResetTimer()
	for start := 0; start < b.N; start += block {
		end := min(start+block, b.N)
		for i := start; i < end; i++ {
			t0 := time.Now()
			e.warden.Evaluate(e.reqs[i%len(e.reqs)], now)
			w[i] = time.Since(t0)
		}
		for i := start; i < end; i++ {
			t0 := time.Now()
			e.evalOPA(b, i%len(e.reqs))
			o[i] = time.Since(t0)
		}
	}
	b.StopTimer()
	mean := func(d []time.Duration) float64 {
		var s time.Duration
		for _, x := range d {
			s += x
		}
		return float64(s.Nanoseconds()) / float64(len(d))
	}
	pct := func(d []time.Duration, p int) float64 {
		slices.Sort(d)
		return float64(d[len(d)*p/100].Nanoseconds())
	}
	wm, om := mean(w), mean(o)
	b.ReportMetric(wm, "warden-ns/op")
	b.ReportMetric(om, "opa-ns/op")
	b.ReportMetric(om/wm, "opa/warden-mean")
	wp50, wp99, op50, op99 := pct(w, 50), pct(w, 99), pct(o, 50), pct(o, 99)
	b.ReportMetric(wp50, "warden-p50-ns")
	b.ReportMetric(wp99, "warden-p99-ns")
	b.ReportMetric(op50, "opa-p50-ns")
	b.ReportMetric(op99, "opa-p99-ns")
	b.ReportMetric(op50/wp50, "opa/warden-p50")
	b.ReportMetric(float64(e.wardenCompile.Milliseconds()), "warden-compile-ms")
	b.ReportMetric(float64(e.opaPrepare.Milliseconds()), "opa-prepare-ms")
}

// BenchmarkEngine is the same work as separate benchmarks, for benchstat.
func BenchmarkEngine(b *testing.B) {
	e := setup(b, rules)
	b.Run("engine=warden", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			e.warden.Evaluate(e.reqs[i%len(e.reqs)], now)
		}
	})
	b.Run("engine=opa", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			e.evalOPA(b, i%len(e.reqs))
		}
	})
}
