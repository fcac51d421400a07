package schema

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// policyDoc returns a Policy document of about 400 bytes, distinct for each
// n so that the cache never serves it.
func policyDoc(n int) []byte {
	return fmt.Appendf(nil, `{"kind": "Policy", "id": "bench-policy-%d", "spec": {
  "name": "Developers may elevate package tools %d", "type": "PrivilegeElevation",
  "status": "enforce", "priority": %d, "controls": ["allow", "justification"],
  "durationSeconds": 900,
  "filters": {"users": ["*"], "groups": ["developers", "ops"], "machines": ["ws-*"],
              "applications": [{"path": "/usr/bin/apt*", "commandLine": "apt install *"}]}}}`,
		n, n, n%10000)
}

func resetCache() {
	cache.mu.Lock()
	cache.m = map[[32]byte]*Document{}
	cache.mu.Unlock()
}

// cpuTime is the CPU time (user and system, all threads) the process has
// used. The benchmark machine is shared, so besides wall-clock docs/s the
// benchmarks report docs per CPU-second, which other load disturbs less.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchDocs(n int) [][]byte {
	docs := make([][]byte, n)
	for i := range docs {
		docs[i] = policyDoc(i)
	}
	return docs
}

func report(b *testing.B, docs int, cpu0 time.Duration) {
	b.ReportMetric(float64(docs)/b.Elapsed().Seconds(), "docs/s")
	b.ReportMetric(float64(docs)/(cpuTime()-cpu0).Seconds(), "docs/cpu-s")
}

// BenchmarkValidate measures cold validation (no cache hits) of ~400-byte
// policies in one goroutine. With -cpu=1 it is docs/s on one core.
func BenchmarkValidate(b *testing.B) {
	docs := benchDocs(4096)
	Validate("warm.json", policyDoc(-1)) // compile the schema outside the timer
	resetCache()
	b.SetBytes(int64(len(docs[0])))
	b.ReportAllocs()
	cpu0 := cpuTime()
	n := 0
	for b.Loop() {
		if n%len(docs) == 0 && n > 0 {
			b.StopTimer()
			resetCache()
			b.StartTimer()
		}
		if _, err := Validate("p.json", docs[n%len(docs)]); err != nil {
			b.Fatal(err)
		}
		n++
	}
	report(b, n, cpu0)
}

// BenchmarkValidateMany10k validates a generation of 10,000 distinct
// ~400-byte policies with ValidateMany (all of GOMAXPROCS), cold.
func BenchmarkValidateMany10k(b *testing.B) {
	files := make([]File, 10_000)
	for i := range files {
		files[i] = File{Name: fmt.Sprintf("policies/p%d.json", i), Data: policyDoc(i)}
	}
	ValidateMany(files[:1])
	cpu0 := cpuTime()
	n := 0
	for b.Loop() {
		b.StopTimer()
		resetCache()
		b.StartTimer()
		if _, err := ValidateMany(files); err != nil {
			b.Fatal(err)
		}
		n += len(files)
	}
	report(b, n, cpu0)
}

// BenchmarkRevalidate10k re-validates an applied 10,000-document state in
// which 10 documents changed: the cache answers for the other 9,990.
func BenchmarkRevalidate10k(b *testing.B) {
	files := make([]File, 10_000)
	for i := range files {
		files[i] = File{Name: fmt.Sprintf("policies/p%d.json", i), Data: policyDoc(i)}
	}
	resetCache()
	if _, err := ValidateMany(files); err != nil {
		b.Fatal(err)
	}
	cpu0 := cpuTime()
	n, round := 0, 0
	for b.Loop() {
		round++
		for k := 0; k < 10; k++ {
			files[k*997].Data = policyDoc(1_000_000*round + k)
		}
		if _, err := ValidateMany(files); err != nil {
			b.Fatal(err)
		}
		n += len(files)
	}
	report(b, n, cpu0)
}

// BenchmarkValidateCached is one re-validation of an unchanged document.
func BenchmarkValidateCached(b *testing.B) {
	doc := policyDoc(42)
	Validate("p.json", doc)
	cpu0 := cpuTime()
	for b.Loop() {
		if _, err := Validate("p.json", doc); err != nil {
			b.Fatal(err)
		}
	}
	report(b, b.N, cpu0)
}
