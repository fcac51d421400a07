package audit_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"warden/audit"
)

// BenchmarkAppend measures durable appends (fsync on) with 1 and 64
// concurrent writers, and reports the p99 latency of one Write. The
// subscribers= cases add live subscriptions read as the agent's broker
// and metrics read theirs, one event at a time.
func BenchmarkAppend(b *testing.B) {
	for _, c := range []struct {
		name               string
		writers, subscribe int
	}{{"writers=1", 1, 0}, {"writers=64", 64, 0}, {"writers=64/subscribers=2", 64, 2}} {
		writers := c.writers
		b.Run(c.name, func(b *testing.B) {
			st := openStore(b, b.TempDir())
			defer st.Close()
			w, err := audit.NewWriter(st, audit.Options{Machine: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer w.Close()
			for range c.subscribe {
				evs, cancel := w.Subscribe()
				defer cancel()
				go func() {
					for range evs {
					}
				}()
			}
			ev := audit.Event{Type: audit.PolicyEvaluation, Component: "bench",
				UserInfo:   &audit.UserInfo{User: "carol", Groups: []string{"staff"}},
				TargetInfo: &audit.TargetInfo{Kind: "elevate", Path: "/usr/bin/apt-get"},
				Evaluation: &audit.Evaluation{Decision: "allow", Effective: "allow", Mode: "enforce", Policy: "dev-tools"}}
			lat := make([][]time.Duration, writers)
			per := b.N/writers + 1
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := 0; g < writers; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					l := make([]time.Duration, 0, per)
					for i := 0; i < per; i++ {
						t0 := time.Now()
						if _, err := w.Write(context.Background(), ev); err != nil {
							b.Error(err)
							return
						}
						l = append(l, time.Since(t0))
					}
					lat[g] = l
				}(g)
			}
			wg.Wait()
			b.StopTimer()
			var all []time.Duration
			for _, l := range lat {
				all = append(all, l...)
			}
			sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
			b.ReportMetric(float64(len(all))/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
		})
	}
}
