package source

import "time"

// SetTimings shortens Sync's intervals for tests in package source_test
// (which can import source/backend without an import cycle).
func (s *Sync) SetTimings(poll, minBackoff, maxBackoff, uploadEvery time.Duration, batch int) {
	s.poll, s.minBackoff, s.maxBackoff, s.uploadEvery, s.batch = poll, minBackoff, maxBackoff, uploadEvery, batch
}

// SetLongPoll overrides Settings backend.longPollSeconds (0: off).
func (s *Sync) SetLongPoll(d time.Duration) { s.longPoll = &d }
