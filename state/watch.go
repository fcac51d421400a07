package state

// WatchBucket returns a channel that receives a value after every
// committed Put, PutMany or Delete of bucket b. Notifications coalesce:
// the channel holds at most one, so a slow reader learns that b changed,
// not how often; it must then read what it needs. The reconcile
// controllers of grants use it to act when the engine creates or expires
// a grant, without polling. cancel stops the watch; Close closes the
// channel.
func (s *Store) WatchBucket(b Bucket) (ch <-chan struct{}, cancel func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := make(chan struct{}, 1)
	if s.closed {
		close(c)
		return c, func() {}
	}
	if s.watches == nil {
		s.watches = map[int]bucketWatch{}
	}
	id := s.nextID
	s.nextID++
	s.watches[id] = bucketWatch{b, c}
	return c, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.watches[id]; ok {
			delete(s.watches, id)
			close(c)
		}
	}
}

type bucketWatch struct {
	b  Bucket
	ch chan struct{}
}

// changed tells the watchers of b that it changed.
func (s *Store) changed(b Bucket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.watches {
		if w.b != b {
			continue
		}
		select {
		case w.ch <- struct{}{}:
		default: // one pending notification says it all
		}
	}
}
