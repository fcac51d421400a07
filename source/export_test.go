package source

import "time"

// SetTimings shortens Sync's intervals for tests in package source_test
// (which can import source/backend without an import cycle).
func (s *Sync) SetTimings(poll, minBackoff, maxBackoff, uploadEvery time.Duration, batch int) {
	s.poll, s.minBackoff, s.maxBackoff, s.uploadEvery, s.batch = poll, minBackoff, maxBackoff, uploadEvery, batch
}
