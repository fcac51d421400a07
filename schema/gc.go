package schema

import (
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// CUE allocates tens of kilobytes per document evaluated, nearly all of it
// dead once the document is checked. With the small live heap of an agent
// the collector then runs every few megabytes, and a batch of 10,000
// documents spends about a third of its CPU in it. While a large batch is
// validated the collector is told to let the heap grow (GOGC 400) but not
// past relaxHeadroom above what the process holds when the batch starts
// (a soft memory limit), so a batch costs less CPU and the peak stays
// bounded. Batches may overlap: the first to start relaxes, the last to
// finish restores the settings it found. A GOGC that is off or above 400
// is left as it is.
const (
	relaxMinDocs   = 256
	relaxGCPercent = 400
	relaxHeadroom  = 96 << 20
)

var relax struct {
	mu             sync.Mutex
	n              int
	percent, limit int64
}

// relaxGC relaxes the collector for a batch of n documents and returns the
// function that ends it.
func relaxGC(n int) (restore func()) {
	if n < relaxMinDocs {
		return func() {}
	}
	relax.mu.Lock()
	defer relax.mu.Unlock()
	if relax.n == 0 {
		s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
		metrics.Read(s)
		held := int64(s[0].Value.Uint64())
		relax.limit = debug.SetMemoryLimit(-1)
		relax.percent = int64(debug.SetGCPercent(relaxGCPercent))
		if relax.percent < 0 || relax.percent > relaxGCPercent {
			// GOGC=off, or already more relaxed: leave the operator's choice.
			debug.SetGCPercent(int(relax.percent))
		}
		debug.SetMemoryLimit(min(relax.limit, held+relaxHeadroom))
	}
	relax.n++
	return func() {
		relax.mu.Lock()
		defer relax.mu.Unlock()
		if relax.n--; relax.n == 0 {
			debug.SetGCPercent(int(relax.percent))
			debug.SetMemoryLimit(relax.limit)
		}
	}
}
