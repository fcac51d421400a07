package reconcile

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"warden/state"
)

// The files controller's ledger is what it last wrote or verified at each
// path, kept in the store (the Status bucket) so that it outlives the
// process. With it, a materialized file deleted while the agent was down
// is drift at the next start, as it would have been with the agent up,
// instead of being recreated quietly; and a file that still holds what the
// agent wrote for an older generation is updated without a drift record.
//
// The ledger is saved a moment after it changes (one write for a burst of
// changes) and when the reconciler stops. An agent killed within that
// moment loses the last changes: at the next start the ledger is as it was
// at the last save, so a file written in that moment and deleted while the
// agent was down is restored without a drift record, and one it wrote for
// a newer generation reads as content drift (as on a fresh install).
const (
	ledgerKey   = "files.written"
	ledgerDelay = time.Second
)

// ledgerRecord is the stored ledger: for each path, the path, a NUL and the
// 32 bytes of its SHA-256. One opaque blob decodes several times faster
// than a JSON object of 10,000 hex strings (BenchmarkLedger10k).
type ledgerRecord struct {
	Written []byte `json:"written"`
}

func encodeLedger(written map[string][32]byte) []byte {
	n := 0
	for p := range written {
		n += len(p) + 1 + 32
	}
	buf := make([]byte, 0, n)
	for p, sum := range written {
		buf = append(buf, p...)
		buf = append(buf, 0)
		buf = append(buf, sum[:]...)
	}
	return buf
}

func decodeLedger(buf []byte) (map[string][32]byte, error) {
	written := map[string][32]byte{}
	for len(buf) > 0 {
		i := bytes.IndexByte(buf, 0)
		if i < 0 || len(buf) < i+1+32 {
			return nil, fmt.Errorf("truncated entry at byte %d", len(buf))
		}
		p := string(buf[:i])
		if filesOwned(p) {
			written[p] = [32]byte(buf[i+1 : i+1+32])
		}
		buf = buf[i+1+32:]
	}
	return written, nil
}

// ledger guards written and the saving of it.
type ledger struct {
	mu        sync.Mutex
	written   map[string][32]byte // content this agent wrote or verified, by path
	unsynced  map[string]bool     // paths written (without fsync) since the last save
	dirty     bool
	scheduled bool
	closed    bool

	saveMu sync.Mutex // one save at a time, in order
}

// load reads the ledger an earlier run saved. A missing record is a fresh
// install; an unreadable one is logged and treated the same way.
func (f *Files) loadLedger() {
	var rec ledgerRecord
	ok, err := f.m.store.Get(state.Status, ledgerKey, &rec)
	if err != nil {
		f.m.log.Warn("files ledger unreadable; every file counts as never written", "err", err)
		return
	}
	if !ok {
		return
	}
	written, err := decodeLedger(rec.Written)
	if err != nil {
		f.m.log.Warn("files ledger corrupt; every file counts as never written", "err", err)
		return
	}
	f.led.mu.Lock()
	f.led.written = written
	f.led.mu.Unlock()
}

// lastWritten returns what the agent last wrote or verified at rel.
func (f *Files) lastWritten(rel string) ([32]byte, bool) {
	f.led.mu.Lock()
	defer f.led.mu.Unlock()
	sum, ok := f.led.written[rel]
	return sum, ok
}

// writtenPaths lists every path in the ledger.
func (f *Files) writtenPaths() []string {
	f.led.mu.Lock()
	defer f.led.mu.Unlock()
	paths := make([]string, 0, len(f.led.written))
	for p := range f.led.written {
		paths = append(paths, p)
	}
	return paths
}

// noteWritten records that rel holds sum, written or verified by the agent.
func (f *Files) noteWritten(rel string, sum [32]byte) {
	f.led.mu.Lock()
	defer f.led.mu.Unlock()
	if prev, ok := f.led.written[rel]; ok && prev == sum {
		return
	}
	if f.led.written == nil {
		f.led.written = map[string][32]byte{}
	}
	f.led.written[rel] = sum
	f.changedLocked()
}

// noteUnsynced records that rel was written without an fsync; the next
// save makes it durable before the ledger names it.
func (f *Files) noteUnsynced(rel string) {
	f.led.mu.Lock()
	defer f.led.mu.Unlock()
	if f.led.unsynced == nil {
		f.led.unsynced = map[string]bool{}
	}
	f.led.unsynced[rel] = true
}

// syncWritten fsyncs the files written since the last save and their
// folders (a file gone since is skipped); more than syncOneByOne of them
// are made durable with one syncfs of the root's filesystem instead: an
// fsync commits the filesystem's journal, and 10,000 of them after a
// first apply cost half a second of CPU, in the middle of whatever the
// agent does next. On failure the paths stay to be synced at the next
// save.
func (f *Files) syncWritten() error {
	f.led.mu.Lock()
	paths := f.led.unsynced
	f.led.unsynced = nil
	f.led.mu.Unlock()
	dirs := map[string]bool{}
	var err error
	if len(paths) > syncOneByOne {
		if err = syncFS(f.m.rootfd); err != nil {
			err = fmt.Errorf("syncfs %s: %w", f.m.root, err)
		}
		f.keepUnsynced(paths, err)
		return err
	}
	for rel := range paths {
		dir, _ := splitRel(rel)
		dirs[dir] = true
		if err = fsyncAt(f.m.rootfd, rel, unix.O_RDONLY); err != nil {
			break
		}
	}
	for dir := range dirs {
		if err != nil {
			break
		}
		err = fsyncAt(f.m.rootfd, dir, unix.O_RDONLY|unix.O_DIRECTORY)
	}
	f.keepUnsynced(paths, err)
	return err
}

// syncOneByOne is how many written files syncWritten fsyncs one by one.
const syncOneByOne = 64

// syncFS is syncfs(2); a test counts and fails its calls.
var syncFS = unix.Syncfs

// keepUnsynced puts paths back to be synced at the next save when err is
// not nil.
func (f *Files) keepUnsynced(paths map[string]bool, err error) {
	if err == nil {
		return
	}
	f.led.mu.Lock()
	defer f.led.mu.Unlock()
	for rel := range paths {
		if f.led.unsynced == nil {
			f.led.unsynced = map[string]bool{}
		}
		f.led.unsynced[rel] = true
	}
}

func fsyncAt(rootfd int, rel string, flags int) error {
	fd, err := unix.Openat(rootfd, rel, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", rel, err)
	}
	defer unix.Close(fd)
	if err := unix.Fsync(fd); err != nil {
		return fmt.Errorf("fsync %s: %w", rel, err)
	}
	return nil
}

// forget drops rel from the ledger: the file is gone and not desired.
func (f *Files) forget(rel string) {
	f.led.mu.Lock()
	defer f.led.mu.Unlock()
	if _, ok := f.led.written[rel]; !ok {
		return
	}
	delete(f.led.written, rel)
	f.changedLocked()
}

// changedLocked marks the ledger dirty and schedules a save. f.led.mu held.
func (f *Files) changedLocked() {
	f.led.dirty = true
	if f.led.scheduled || f.led.closed {
		return
	}
	f.led.scheduled = true
	time.AfterFunc(ledgerDelay, func() {
		f.led.mu.Lock()
		f.led.scheduled = false
		closed := f.led.closed
		f.led.mu.Unlock()
		if !closed {
			f.saveLedger()
		}
	})
}

// saveLedger stores the ledger if it changed since the last save.
func (f *Files) saveLedger() {
	f.led.saveMu.Lock()
	defer f.led.saveMu.Unlock()
	f.led.mu.Lock()
	if !f.led.dirty {
		f.led.mu.Unlock()
		return
	}
	snap := maps.Clone(f.led.written)
	f.led.dirty = false
	f.led.mu.Unlock()

	// The files are written without fsync (writeAtomic): make them
	// durable before the ledger says they were written, so that after a
	// crash the ledger never names content the disk does not hold. This
	// runs off the write path, once for a burst of writes.
	err := f.syncWritten()
	if err == nil {
		if err = f.m.store.Put(state.Status, ledgerKey, ledgerRecord{Written: encodeLedger(snap)}); err != nil {
			err = fmt.Errorf("store: %w", err)
		}
	}
	if err != nil {
		f.m.log.Warn("files ledger not saved; trying again", "paths", len(snap), "err", err)
		f.led.mu.Lock()
		f.changedLocked() // dirty again, and another save scheduled
		f.led.mu.Unlock()
	}
}

// closeLedger saves what changed since the last save and stops saving: the
// reconciler is stopping and the store closes after it.
func (f *Files) closeLedger() {
	f.led.mu.Lock()
	f.led.closed = true
	f.led.mu.Unlock()
	f.saveLedger()
}
