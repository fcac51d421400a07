// Package state is warden's store: desired documents by generation, observed
// status, drift records, the audit log and grants, in one bbolt file whose
// values are encrypted with AES-256-GCM. It is the only package that opens
// the database.
package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"warden/schema"
)

// File names inside KeeperStorage/.
const (
	DBFile  = "warden.db"
	KeyFile = "data.key"
)

// Errors a caller can test for.
var (
	ErrKeyMissing = errors.New("data key missing: the database cannot be read without KeeperStorage/data.key")
	ErrWrongKey   = errors.New("data key does not open this database")
	ErrLocked     = errors.New("store is in use by another agent")
	ErrCorrupt    = errors.New("stored value failed authentication (tampered with or wrong key)")
	ErrNotFound   = errors.New("not found")
	ErrClosed     = errors.New("store closed")
)

// Bucket names. They name what a bucket holds, never whose data it is.
var (
	bMeta    = []byte("meta")
	bDesired = []byte("desired")
	bDocs    = []byte("docs")    // sealed documents by content reference (docs.go)
	bDocRefs = []byte("docrefs") // how many kept generations use each document
	bAudit   = []byte("audit")
)

var (
	kKeyCheck = []byte("keycheck")
	kCurrent  = []byte("current")
	kAnchor   = []byte("audit-anchor")
)

const keyCheckText = "warden data key check v1"

// Options tunes Open.
type Options struct {
	// KeepGenerations is how many generations are kept (default 10).
	KeepGenerations int
	// NoSync skips fsync; for benchmarks that measure everything else only.
	NoSync bool
	// MustExist refuses to create a store: a missing warden.db fails with
	// ErrNoStore (readers such as `warden audit verify`).
	MustExist bool
	// CheckLimit bounds bbolt's full consistency check at open: it runs
	// when warden.db is at most this many bytes (default 256 MiB, about a
	// second); a larger file gets the cheaper meta-page checks only.
	// Negative skips it.
	CheckLimit int64
}

// ErrNoStore is returned by Open with MustExist when there is no warden.db.
var ErrNoStore = errors.New("no store")

// ErrDamaged is returned by Open when warden.db fails bbolt's consistency
// check or cannot be read at all, and by any store call that hit a damaged
// page (recovered from bbolt's panic).
var ErrDamaged = errors.New("store file is damaged")

const defaultCheckLimit = 256 << 20

// Store is an open warden.db. It is safe for concurrent use.
type Store struct {
	db   *bolt.DB
	seal *sealer
	keep int
	cp   *checkpointer

	current atomic.Pointer[Snapshot]
	// applyMu makes an apply's commit and its publication (current, then
	// subscribers) one step: bbolt serializes the commits, but without it
	// two applies could publish in the other order and leave current on
	// the older generation.
	applyMu sync.Mutex
	// lastDocs and lastRefs are the documents of the last applied
	// generation, as given, and their content references (under applyMu):
	// most of the next one's are the same, and a reference costs an HMAC.
	lastDocs []*schema.Document
	lastRefs []docRef
	// lastSorted is lastDocs in snapshot order, and lastPlace the place
	// there of each of lastDocs (sortedOf).
	lastSorted []*schema.Document
	lastPlace  []int

	mu      sync.Mutex
	subs    map[int]chan uint64
	watches map[int]bucketWatch // WatchBucket
	nextID  int
	closed  bool
}

// Open opens (creating if needed) dir/warden.db with the data key in
// dir/data.key. A new database gets a new key; an existing one whose key is
// missing or different fails with ErrKeyMissing or ErrWrongKey. A database
// held by another process fails with ErrLocked after a short wait.
//
// Open never silently starts over: an empty (0-byte) warden.db, or one
// missing or behind dir/checkpoint.json (a lost or replaced file), fails
// with ErrBehind or ErrDamaged and a one-line remedy; a file that fails
// bbolt's consistency check fails with ErrDamaged.
func Open(dir string, opts Options) (*Store, error) {
	if opts.KeepGenerations <= 0 {
		opts.KeepGenerations = 10
	}
	if opts.CheckLimit == 0 {
		opts.CheckLimit = defaultCheckLimit
	}
	dbPath := filepath.Join(dir, DBFile)
	cpPath := filepath.Join(dir, CheckpointFile)
	info, statErr := os.Stat(dbPath)
	fresh := errors.Is(statErr, os.ErrNotExist)
	if fresh && opts.MustExist {
		return nil, fmt.Errorf("%w at %s", ErrNoStore, dbPath)
	}
	if _, err := os.Stat(cpPath); err == nil && fresh {
		return nil, fmt.Errorf("%w: %s is missing but %s exists; restore the newest backup of %s, or remove %s to start a new store",
			ErrBehind, dbPath, CheckpointFile, DBFile, CheckpointFile)
	}
	if statErr == nil && info.Size() == 0 {
		return nil, fmt.Errorf("%w: %s is empty (0 bytes); restore the newest backup of it, or remove it and %s to start a new store",
			ErrDamaged, dbPath, CheckpointFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, err)
	}
	key, err := loadKey(filepath.Join(dir, KeyFile), fresh)
	if err != nil {
		return nil, err
	}
	sl, err := newSealer(key)
	if err != nil {
		return nil, err
	}
	db, err := openBolt(dbPath, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, seal: sl, keep: opts.KeepGenerations, subs: map[int]chan uint64{}}
	fail := func(err error) (*Store, error) {
		db.Close()
		return nil, err
	}
	if err := s.init(); err != nil {
		return fail(err)
	}
	// After init: a wrong data key is named as such, not as a bad MAC.
	cpKey := deriveKey(key, "warden checkpoint v1")
	saved, hasCP, err := readCheckpoint(cpPath, cpKey)
	if err != nil {
		return fail(err)
	}
	if err := s.loadCurrent(); err != nil {
		return fail(damaged(dbPath, err))
	}
	lastAudit, err := s.newestAuditSeq()
	if err != nil {
		return fail(damaged(dbPath, err))
	}
	m := s.Current().Meta
	cp := Checkpoint{Generation: m.Generation, BundleVersion: m.BundleVersion, AuditSeq: lastAudit}
	if hasCP {
		if err := checkAhead(dir, saved, m, lastAudit); err != nil {
			return fail(err)
		}
		if saved.AuditSeq == lastAudit {
			cp.AuditHash = saved.AuditHash
		}
	}
	s.cp = newCheckpointer(cpPath, cpKey, cp)
	return s, nil
}

// init creates the buckets and checks (or, on a new database, writes) the
// key check value.
func (s *Store) init() error {
	return s.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bMeta, bDesired, bDocs, bDocRefs, bAudit} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		check := meta.Get(kKeyCheck)
		if check == nil {
			return meta.Put(kKeyCheck, s.seal.seal([]byte(keyCheckText), kKeyCheck))
		}
		plain, err := s.seal.open(check, kKeyCheck)
		if err != nil || string(plain) != keyCheckText {
			return ErrWrongKey
		}
		return nil
	})
}

// Close waits for running transactions and closes the file. Subscribers'
// channels are closed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for id, ch := range s.subs {
		close(ch)
		delete(s.subs, id)
	}
	for id, w := range s.watches {
		close(w.ch)
		delete(s.watches, id)
	}
	s.mu.Unlock()
	cpErr := s.cp.close()
	if err := s.db.Close(); err != nil {
		return err
	}
	if cpErr != nil {
		return fmt.Errorf("write %s: %w", CheckpointFile, cpErr)
	}
	return nil
}

// update and view run fn in a bbolt transaction; on a closed store they
// fail with ErrClosed (wrapping bbolt's own error). A panic from bbolt on a
// damaged page, or a fault reading the mapped file, becomes ErrDamaged:
// no panic from the store reaches a caller.
func (s *Store) update(fn func(*bolt.Tx) error) (err error) {
	defer recoverDamaged(s.db.Path(), &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return closedErr(s.db.Update(fn))
}

func (s *Store) view(fn func(*bolt.Tx) error) (err error) {
	defer recoverDamaged(s.db.Path(), &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return closedErr(s.db.View(fn))
}

func closedErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return fmt.Errorf("%w: %w", ErrClosed, err)
	}
	return err
}

// Path is the database file's path.
func (s *Store) Path() string { return s.db.Path() }

func u64(n uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, n)
	return b
}

func ad(bucket []byte, key []byte) []byte {
	out := make([]byte, 0, len(bucket)+1+len(key))
	out = append(out, bucket...)
	out = append(out, 0)
	return append(out, key...)
}
