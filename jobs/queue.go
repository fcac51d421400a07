package jobs

import "container/heap"

// timeHeap orders jobs by their next due time; at the same moment the
// higher priority comes first, then the id.
type timeHeap []*job

func (h timeHeap) Len() int { return len(h) }
func (h timeHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if !a.due.Equal(b.due) {
		return a.due.Before(b.due)
	}
	if a.spec.Priority != b.spec.Priority {
		return a.spec.Priority > b.spec.Priority
	}
	return a.id < b.id
}
func (h timeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *timeHeap) Push(x any) {
	j := x.(*job)
	j.heapIdx = len(*h)
	*h = append(*h, j)
}
func (h *timeHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	j.heapIdx = -1
	return j
}

// set puts j in the heap at its due time, or takes it out when it has none.
func (h *timeHeap) set(j *job) {
	switch {
	case j.due.IsZero() && j.heapIdx >= 0:
		heap.Remove(h, j.heapIdx)
	case j.due.IsZero():
	case j.heapIdx >= 0:
		heap.Fix(h, j.heapIdx)
	default:
		heap.Push(h, j)
	}
}

// runQueue holds runs waiting for a free slot: higher priority first, then
// first come first served.
type runQueue []*run

func (q runQueue) Len() int { return len(q) }
func (q runQueue) Less(i, j int) bool {
	if q[i].prio != q[j].prio {
		return q[i].prio > q[j].prio
	}
	return q[i].seq < q[j].seq
}
func (q runQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *runQueue) Push(x any)   { *q = append(*q, x.(*run)) }
func (q *runQueue) Pop() any {
	old := *q
	r := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return r
}
