package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"warden/atomicfile"
	"warden/schema"
)

// File forwarding defaults.
const (
	fileMaxSizeMB = 100
	fileMaxFiles  = 5
)

// fileTarget appends events as NDJSON (the stored JSON, one per line) for
// Filebeat, Vector or Fluent Bit, rotating PATH to PATH.1 ... PATH.N past
// maxSizeMB. Its cursor is kept beside it, in PATH.cursor, so it moves
// with the file it describes.
type fileTarget struct {
	path     string
	maxSize  int64
	maxFiles int
}

func newFileTarget(c schema.AuditForward) (*fileTarget, error) {
	if !filepath.IsAbs(c.Path) {
		return nil, fmt.Errorf("path %q is not absolute", c.Path)
	}
	t := &fileTarget{path: filepath.Clean(c.Path), maxSize: fileMaxSizeMB << 20, maxFiles: fileMaxFiles}
	if c.MaxSizeMB > 0 {
		t.maxSize = int64(c.MaxSizeMB) << 20
	}
	if c.MaxFiles > 0 {
		t.maxFiles = c.MaxFiles
	}
	return t, nil
}

func (t *fileTarget) cursorPath() string { return t.path + ".cursor" }

func (t *fileTarget) loadCursor() (uint64, error) {
	data, err := os.ReadFile(t.cursorPath())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var c struct {
		Seq uint64 `json:"seq"`
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return 0, fmt.Errorf("%s: %w", t.cursorPath(), err)
	}
	return c.Seq, nil
}

func (t *fileTarget) saveCursor(seq uint64) error {
	data, _ := json.Marshal(map[string]any{"seq": seq, "at": time.Now().UTC()})
	return atomicfile.Write(t.cursorPath(), append(data, '\n'), 0o640)
}

func (t *fileTarget) open(context.Context) (sink, error) {
	if err := os.MkdirAll(filepath.Dir(t.path), 0o750); err != nil {
		return nil, err
	}
	f, err := openAppend(t.path)
	if err != nil {
		return nil, err
	}
	return &fileSink{t: t, f: f}, nil
}

// openAppend opens path for appending without following a symbolic link
// (the agent runs as root; the folder may not be only root's), and only
// if it is a regular file.
func openAppend(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = fmt.Errorf("%s is not a regular file", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

type fileSink struct {
	t    *fileTarget
	f    *os.File
	buf  []byte
	done uint64 // last seq written and synced
}

func (s *fileSink) send(evs []Event) error {
	s.buf = s.buf[:0]
	for _, e := range evs {
		s.buf = append(s.buf, e.Raw...)
		s.buf = append(s.buf, '\n')
	}
	if st, err := s.f.Stat(); err == nil && st.Size() > 0 && st.Size()+int64(len(s.buf)) > s.t.maxSize {
		if err := s.rotate(); err != nil {
			return fmt.Errorf("rotate %s: %w", s.t.path, err)
		}
	}
	if _, err := s.f.Write(s.buf); err != nil {
		return err
	}
	if err := s.f.Sync(); err != nil {
		return err
	}
	s.done = evs[len(evs)-1].Seq
	return nil
}

// rotate renames PATH.i to PATH.i+1 (dropping the oldest) and PATH to
// PATH.1, and opens a new PATH.
func (s *fileSink) rotate() error {
	p := s.t.path
	os.Remove(p + "." + strconv.Itoa(s.t.maxFiles))
	for i := s.t.maxFiles - 1; i >= 1; i-- {
		if err := os.Rename(p+"."+strconv.Itoa(i), p+"."+strconv.Itoa(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if err := os.Rename(p, p+".1"); err != nil {
		return err
	}
	s.f.Close()
	f, err := openAppend(p)
	if err != nil {
		return err
	}
	s.f = f
	return nil
}

func (s *fileSink) confirmed(time.Time) (uint64, error) { return s.done, nil }
func (s *fileSink) dead() <-chan struct{}               { return nil }
func (s *fileSink) close() error                        { return s.f.Close() }
