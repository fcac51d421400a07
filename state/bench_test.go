package state

import (
	"fmt"
	"testing"
	"time"

	"warden/schema"
)

// BenchmarkApplyGeneration applies generations of 1k, 10k and 100k
// ~400-byte policies, all new each time (as a first apply): JSON encoding,
// AES-GCM sealing, the bbolt write, fsync and commit, and pruning beyond
// the 10 kept generations. Documents are built with schema.Restore, so
// validation is not measured here.
func BenchmarkApplyGeneration(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("docs=%d", n), func(b *testing.B) {
			s := openT(b, keeperDir(b), Options{})
			b.ReportAllocs()
			count := 0
			var elapsed time.Duration
			for b.Loop() {
				b.StopTimer()
				docs := generationDocs(b, n, fmt.Sprint("bench-", count))
				b.StartTimer()
				start := time.Now()
				if _, err := s.ApplyGeneration(Apply{Source: "bench", Docs: docs}); err != nil {
					b.Fatal(err)
				}
				elapsed += time.Since(start)
				count++
			}
			b.ReportMetric(float64(count*n)/elapsed.Seconds(), "docs/s")
		})
	}
}

// BenchmarkOpen10k is an agent start with a 10,000-document generation:
// open, check the key, read and decrypt the current generation.
func BenchmarkOpen10k(b *testing.B) {
	dir := keeperDir(b)
	s, err := Open(dir, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.ApplyGeneration(Apply{Docs: generationDocs(b, 10_000, "bench")}); err != nil {
		b.Fatal(err)
	}
	s.Close()
	for b.Loop() {
		s, err := Open(dir, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if len(s.Current().Docs) != 10_000 {
			b.Fatal("generation not read")
		}
		s.Close()
	}
}

// BenchmarkApplyGenerationChanged10 applies generations of 10,000
// policies of which 10 changed from the one before: what a new version of
// a large bundle costs the store (reference counts, sealing the 10 new
// documents, the index, pruning, fsync and commit), without validation.
func BenchmarkApplyGenerationChanged10(b *testing.B) {
	base := generationDocs(b, 10_000, "base")
	s := openT(b, keeperDir(b), Options{})
	if _, err := s.ApplyGeneration(Apply{Source: "bench", Docs: base}); err != nil {
		b.Fatal(err)
	}
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		docs := append([]*schema.Document(nil), base...)
		for k := 0; k < 10; k++ {
			docs[k*997] = restoredPolicy(b, docs[k*997].ID, fmt.Sprintf("round-%d", round))
		}
		b.StartTimer()
		if _, err := s.ApplyGeneration(Apply{Source: "bench", Docs: docs}); err != nil {
			b.Fatal(err)
		}
	}
}
