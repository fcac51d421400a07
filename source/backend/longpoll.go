package backend

import (
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// maxWait caps how long one bundle request is held (Prefer: wait=N).
const maxWait = 120 * time.Second

// changeFallback is how often waiters look again when the bundles folder
// cannot be watched (no inotify): a new bundle then takes up to this long.
const changeFallback = time.Second

// watchBundles wakes long-polling requests when anything in DIR/bundles
// changes (a bundle published by rename is a create event); the waiters
// then compare ETags, so a spurious wake costs one stat each.
func (s *Server) watchBundles() {
	s.changedCh = make(chan struct{})
	s.stopWatch = make(chan struct{})
	s.watchDone = make(chan struct{})
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(s.bundlesDir()); err != nil {
			w.Close()
		}
	}
	if err != nil {
		s.log.Warn("bundles folder not watched; long polls look for a new bundle every second", "err", err)
	}
	go func() {
		defer close(s.watchDone)
		tick := time.NewTicker(changeFallback)
		defer tick.Stop()
		var events <-chan fsnotify.Event
		var errs <-chan error
		if err == nil {
			defer w.Close()
			events, errs = w.Events, w.Errors
			tick.Stop()
		}
		for {
			select {
			case <-s.stopWatch:
				return
			case <-events:
				s.broadcast()
			case err := <-errs:
				s.log.Warn("watching the bundles folder", "err", err)
				s.broadcast()
			case <-tick.C:
				s.broadcast()
			}
		}
	}()
}

// changed returns a channel closed at the next change of the bundles
// folder. Take it before looking at a bundle, so a change in between is
// not missed.
func (s *Server) changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changedCh
}

func (s *Server) broadcast() {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.changedCh)
	s.changedCh = make(chan struct{})
}

// Close stops watching the bundles folder; requests being held are
// answered at their timeout.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		close(s.stopWatch)
		<-s.watchDone
	})
	return nil
}

// preferWait is the wait=N of a Prefer header (RFC 7240), capped at
// maxWait; 0 when absent or malformed.
func preferWait(h string) time.Duration {
	for _, part := range strings.FieldsFunc(h, func(r rune) bool { return r == ',' || r == ';' }) {
		v, ok := strings.CutPrefix(strings.TrimSpace(part), "wait=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return 0
		}
		if n > int(maxWait/time.Second) {
			return maxWait // before multiplying: a huge N overflows
		}
		return time.Duration(n) * time.Second
	}
	return 0
}

// hold keeps a request whose If-None-Match is the bundle's current ETag
// until the bundle changes, wait passes or the client goes away (OPA's
// bundle service long polling is the model). It reports false when the
// client went away.
func (s *Server) hold(r *http.Request, path string, wait time.Duration) bool {
	inm := r.Header.Get("If-None-Match")
	if inm == "" {
		return true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		ch := s.changed()
		if etag, ok := s.currentETag(path); !ok || etag != inm {
			return true
		}
		select {
		case <-ch:
		case <-timer.C:
			return true
		case <-r.Context().Done():
			return false
		}
	}
}

// currentETag is the bundle's ETag now; false when it cannot be read.
func (s *Server) currentETag(path string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", false
	}
	etag, err := s.etag(path, f, st)
	return etag, err == nil
}
