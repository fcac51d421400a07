package policy

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"warden/schema"
)

// TestConcurrentUse runs an Index, a Limiter and a Breaker from several
// goroutines at once; -race checks them.
func TestConcurrentUse(t *testing.T) {
	ix := mustCompile(t, validated(t, acceptanceDocs...))
	l := NewLimiter(schema.RateLimit{PerMinute: 50, Queue: 5})
	b := NewBreaker(schema.CircuitBreaker{Failures: 3, OpenSeconds: 1})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				req := elevate(fmt.Sprint("u", g), []string{"developers"}, "/usr/bin/nc")
				at := monday10.Add(time.Duration(i) * time.Millisecond)
				key := req.SourceKey()
				if r := l.Reserve(key, at); !r.OK {
					continue
				}
				if ok, _ := b.Allow(key, at); !ok {
					continue
				}
				d := ix.EvaluateExplain(req, at)
				b.Record(key, d.Failed(), at)
			}
		}()
	}
	wg.Wait()
}
