package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// openBolt opens path and checks it: its meta pages and length (preflight),
// bbolt's own meta checks, then bbolt's full consistency check when the
// file is at most opts.CheckLimit bytes. A panic or a memory fault inside
// bbolt (a bit-flipped file) becomes ErrDamaged with a one-line remedy.
// (After such a panic bbolt's file handle, and its lock, stay open until
// the process exits: the agent and the CLI exit on the error.)
func openBolt(path string, opts Options) (db *bolt.DB, err error) {
	if err := preflight(path); err != nil {
		return nil, err
	}
	defer recoverDamaged(path, &err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 500 * time.Millisecond, NoSync: opts.NoSync, InitialMmapSize: 1 << 28})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, damaged(path, err)
	}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if opts.CheckLimit < 0 || info.Size() > opts.CheckLimit {
		return db, nil
	}
	err = db.View(func(tx *bolt.Tx) error {
		var msgs []string
		for e := range tx.Check() {
			if len(msgs) < 3 {
				msgs = append(msgs, e.Error())
			}
		}
		if len(msgs) > 0 {
			return errors.New(strings.Join(msgs, "; "))
		}
		return nil
	})
	if err != nil {
		return nil, damaged(path, err)
	}
	return db, nil
}

// damaged wraps err (a read failure of the file itself) as ErrDamaged with
// the remedy, unless it already says what is wrong.
func damaged(path string, err error) error {
	if errors.Is(err, ErrDamaged) || errors.Is(err, ErrClosed) || errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("%w: %s: %v; restore the newest backup of it (or remove it and %s to start a new store)",
		ErrDamaged, path, err, CheckpointFile)
}

// recoverDamaged turns a panic in bbolt (or a fault on the mapped file,
// with SetPanicOnFault) into ErrDamaged in *err.
func recoverDamaged(path string, err *error) {
	if r := recover(); r != nil {
		*err = damaged(path, fmt.Errorf("bbolt failed reading a page (%v)", r))
	}
}

// bbolt's meta page (go.etcd.io/bbolt/internal/common: page header, then
// Meta), read here before bbolt maps the file so that a truncated file is
// refused without bbolt faulting (and leaking its lock) on it.
const (
	pageHeaderSize = 16
	metaSize       = 64 // magic, version, pageSize, flags, root(16), freelist, pgid, txid, checksum
	boltMagic      = 0xED0CDAED
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64 // high-water mark: pages in use
	txid     uint64
}

func readMeta(b []byte) (boltMeta, bool) {
	if len(b) < pageHeaderSize+metaSize {
		return boltMeta{}, false
	}
	m := b[pageHeaderSize : pageHeaderSize+metaSize]
	le := binary.LittleEndian
	if le.Uint32(m[0:]) != boltMagic {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}, true
}

// preflight checks that path has a valid meta page and is as long as the
// newest valid one says the store is.
func preflight(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // a new store
	}
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _ := io.ReadFull(f, buf)
	m0, ok0 := readMeta(buf[:n])
	var m1 boltMeta
	ok1 := false
	for _, ps := range []int64{int64(m0.pageSize), 4096, int64(os.Getpagesize())} {
		if ps <= 0 {
			continue
		}
		b := make([]byte, pageHeaderSize+metaSize)
		if n, _ := f.ReadAt(b, ps); n == len(b) {
			if m1, ok1 = readMeta(b); ok1 {
				break
			}
		}
	}
	m := m0
	switch {
	case !ok0 && !ok1:
		return damaged(path, errors.New("no valid bbolt meta page (not a store, or both headers damaged)"))
	case !ok0 || ok1 && m1.txid > m0.txid:
		m = m1
	}
	if need := int64(m.pgid) * int64(m.pageSize); info.Size() < need {
		return damaged(path, fmt.Errorf("truncated: the file is %d bytes, the store it holds needs %d", info.Size(), need))
	}
	return nil
}
