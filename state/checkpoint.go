package state

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	"warden/atomicfile"
)

// CheckpointFile is the store's checkpoint inside KeeperStorage/, beside
// (not in) warden.db.
const CheckpointFile = "checkpoint.json"

// ErrBehind is returned by Open when warden.db is behind its checkpoint:
// missing, empty, truncated, replaced or restored from an older copy.
var ErrBehind = errors.New("store is behind its checkpoint")

// Checkpoint is the newest state the store has committed, kept outside the
// database so that a database that lost commits (a 0-byte or replaced
// warden.db, newest audit events deleted) is noticed instead of starting
// over at generation 0, which would also defeat rollback protection. It is
// MAC'd with a key derived from the data key.
type Checkpoint struct {
	Generation    uint64 `json:"generation"`
	BundleVersion int64  `json:"bundleVersion"`
	AuditSeq      uint64 `json:"auditSeq"`
	AuditHash     string `json:"auditHash,omitempty"`
	MAC           string `json:"mac"`
}

func (c Checkpoint) mac(key []byte) string {
	c.MAC = ""
	b, _ := json.Marshal(c)
	m := hmac.New(sha256.New, key)
	m.Write(b)
	return hex.EncodeToString(m.Sum(nil))
}

// checkpointer keeps the checkpoint file up to date. Commits advance it in
// memory; one goroutine writes the newest value (atomically: temporary
// file, fsync, rename), so a burst of commits costs one write, like the
// audit writer's group commit, and no commit waits for it. A crash can
// leave the file behind the database (harmless: the store is ahead of
// it), never ahead.
type checkpointer struct {
	path string
	key  []byte

	mu      sync.Mutex
	cp      Checkpoint
	written Checkpoint
	err     error
	wake    chan struct{}
	done    chan struct{}
	stopped chan struct{}
}

func newCheckpointer(path string, key []byte, cp Checkpoint) *checkpointer {
	c := &checkpointer{path: path, key: key, cp: cp, wake: make(chan struct{}, 1),
		done: make(chan struct{}), stopped: make(chan struct{})}
	go c.loop()
	c.poke()
	return c
}

// advance applies f to the in-memory checkpoint and schedules a write.
func (c *checkpointer) advance(f func(*Checkpoint)) {
	c.mu.Lock()
	f(&c.cp)
	c.mu.Unlock()
	c.poke()
}

func (c *checkpointer) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// checkpointEvery is the least time between two checkpoint writes. Each
// write is a file replaced with two fsyncs: written after every audit
// commit, it cost a busy agent 14% of its CPU on the decision path. A
// checkpoint that trails the database by this much still refuses every
// older store; what it cannot see is the loss of the newest moment.
const checkpointEvery = 50 * time.Millisecond

func (c *checkpointer) loop() {
	defer close(c.stopped)
	for {
		select {
		case <-c.wake:
			c.flush()
		case <-c.done:
			c.flush()
			return
		}
		select {
		case <-time.After(checkpointEvery):
		case <-c.done:
			c.flush()
			return
		}
	}
}

// flush writes the newest checkpoint if it changed.
func (c *checkpointer) flush() {
	c.mu.Lock()
	cp := c.cp
	same := cp == c.written
	c.mu.Unlock()
	if same {
		return
	}
	cp.MAC = cp.mac(c.key)
	b, _ := json.MarshalIndent(cp, "", "  ")
	err := atomicfile.Write(c.path, append(b, '\n'), 0o600)
	c.mu.Lock()
	c.err = err
	if err == nil {
		cp.MAC = ""
		c.written = cp
	}
	c.mu.Unlock()
}

// close writes the newest checkpoint and stops.
func (c *checkpointer) close() error {
	close(c.done)
	<-c.stopped
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// readCheckpoint reads and authenticates path; ok is false when there is
// no checkpoint.
func readCheckpoint(path string, key []byte) (cp Checkpoint, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cp, false, nil
	}
	if err != nil {
		return cp, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &cp); err != nil {
		return cp, false, fmt.Errorf("%s: %w (remove it to accept the store as it is)", path, err)
	}
	if !hmac.Equal([]byte(cp.mac(key)), []byte(cp.MAC)) {
		return cp, false, fmt.Errorf("%s: MAC does not match the data key (tampered with or another store's; remove it to accept the store as it is)", path)
	}
	cp.MAC = ""
	return cp, true, nil
}

// Checkpoint returns the store's newest committed state as the checkpoint
// file records it (possibly a moment behind the database).
func (s *Store) Checkpoint() Checkpoint {
	s.cp.mu.Lock()
	defer s.cp.mu.Unlock()
	return s.cp.cp
}

// SavedCheckpoint reads the checkpoint file as it is on disk (ok false when
// there is none): what `warden audit verify` compares the chain with.
func (s *Store) SavedCheckpoint() (Checkpoint, bool, error) {
	return readCheckpoint(s.cp.path, s.cp.key)
}

func behind(dir string, cp Checkpoint, what string) error {
	return fmt.Errorf("%w: %s/%s %s, but %s records generation %d, bundle version %d, audit event %d; "+
		"restore the newest backup of %s, or remove %s to accept this store as it is",
		ErrBehind, dir, DBFile, what, CheckpointFile, cp.Generation, cp.BundleVersion, cp.AuditSeq, DBFile, CheckpointFile)
}

// checkAhead refuses a store that is behind cp.
func checkAhead(dir string, cp Checkpoint, m Meta, lastAudit uint64) error {
	switch {
	case m.Generation < cp.Generation || m.BundleVersion < cp.BundleVersion:
		return behind(dir, cp, fmt.Sprintf("is at generation %d, bundle version %d", m.Generation, m.BundleVersion))
	case lastAudit < cp.AuditSeq:
		return behind(dir, cp, fmt.Sprintf("ends at audit event %d", lastAudit))
	}
	return nil
}
