package api

import (
	"net/http"
	"time"

	"warden/audit"
)

// auditFollow streams matching events as NDJSON: first those already
// stored (after the filter's cursor), then each new one as it is stored,
// until the client goes away. The writer's subscription only wakes the
// stream; events are always read from the store, so a subscriber that
// falls behind misses nothing.
func (s *Server) auditFollow(w http.ResponseWriter, r *http.Request, f audit.Filter) {
	wake, cancel := s.opts.Audit.Subscribe(f.Types...)
	defer cancel()
	rc := http.NewResponseController(w)
	// The server's write timeout is for ordinary answers; a stream lives
	// as long as its client.
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	if rc.Flush() != nil {
		return
	}
	f.Limit = 1000
	for {
		for {
			events, next, err := audit.Query(s.opts.Store, f)
			if err != nil {
				s.log.Error("audit follow", "err", err)
				return
			}
			for _, e := range events {
				w.Write(e.Raw)
				w.Write([]byte{'\n'})
				f.After = e.Seq
			}
			if len(events) > 0 {
				if rc.Flush() != nil {
					return
				}
			}
			if next == "" {
				break
			}
		}
		select {
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		case _, ok := <-wake:
			if !ok {
				return
			}
		}
	}
}
