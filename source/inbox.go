package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"golang.org/x/sys/unix"
)

// Folders below the inbox for processed bundles.
const (
	DoneDir     = "done"
	RejectedDir = "rejected"
)

// Inbox timing. A file is read once no event has touched it for
// inboxQuiet and its size and mtime did not move meanwhile. fsnotify has no
// portable close-write event (v1.10 keeps it unexported), so completeness
// of a plain copy is judged by quiet, plus a second line of defence: a file
// that reads as truncated or not yet gzip is only refused once it has not
// changed for inboxSettle, since that is exactly what a copy in progress
// looks like. Renaming a finished NAME.part to NAME is the instant path.
const (
	inboxQuiet  = 100 * time.Millisecond
	inboxSettle = 30 * time.Second
	inboxRescan = time.Minute
)

// Inbox applies bundles dropped into a folder (the airgapped path). It
// watches the folder with fsnotify and rescans it at start and every
// minute, in case an event was lost. *.part files, dot files and folders
// are ignored. Each bundle goes through the Pipeline once; then it moves to
// done/ or, refused, to rejected/ with NAME.reason beside it (one line).
type Inbox struct {
	dir string
	p   *Pipeline
	log *slog.Logger

	quiet, settle, rescan time.Duration
	// observe, when set (tests), hears each outcome: "waiting", "done",
	// "rejected", "retry".
	observe func(name, outcome string)

	mu   sync.Mutex
	idle chan struct{} // closed while no bundle is about to be processed
}

// NewInbox watches dir (created 0700 if missing) and applies what arrives
// through p.
func NewInbox(dir string, p *Pipeline, logger *slog.Logger) *Inbox {
	if logger == nil {
		logger = slog.Default()
	}
	idle := make(chan struct{})
	close(idle)
	return &Inbox{dir: dir, p: p, log: logger.With("component", "inbox"),
		quiet: inboxQuiet, settle: inboxSettle, rescan: inboxRescan, idle: idle}
}

// WaitIdle returns once no bundle in the inbox is about to be processed
// (files still being written, waiting to settle, do not count), or when ctx
// ends. The API's status calls it so that an operator who drops a bundle
// and asks at once reads the outcome of that drop, not the state before it.
func (in *Inbox) WaitIdle(ctx context.Context) {
	in.mu.Lock()
	idle := in.idle
	in.mu.Unlock()
	select {
	case <-idle:
	case <-ctx.Done():
	}
}

// setBusy records whether some file is due within the quiet period.
func (in *Inbox) setBusy(files map[string]*pending) {
	busy := false
	soon := time.Now().Add(2 * in.quiet)
	for _, f := range files {
		if f.due.Before(soon) {
			busy = true
			break
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	select {
	case <-in.idle:
		if busy {
			in.idle = make(chan struct{})
		}
	default:
		if !busy {
			close(in.idle)
		}
	}
}

// pending is a file seen but not yet processed.
type pending struct {
	due   time.Time
	size  int64
	mtime time.Time
}

// Run watches the inbox until ctx ends, then returns nil. It fails only
// when the folders cannot be created. Bundles already in the inbox (dropped
// while the agent was stopped) are applied at once, oldest first.
func (in *Inbox) Run(ctx context.Context) error {
	for _, d := range []string{in.dir, filepath.Join(in.dir, DoneDir), filepath.Join(in.dir, RejectedDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("inbox: %w", err)
		}
	}
	var events <-chan fsnotify.Event
	var werrs <-chan error
	rescanEvery := in.rescan
	if w, err := fsnotify.NewWatcher(); err != nil {
		in.log.Warn("inbox: no file events, polling instead", "err", err)
		rescanEvery = time.Second
	} else {
		defer w.Close()
		if err := w.Add(in.dir); err != nil {
			in.log.Warn("inbox: no file events, polling instead", "path", in.dir, "err", err)
			rescanEvery = time.Second
		}
		events, werrs = w.Events, w.Errors
	}
	files := map[string]*pending{}
	in.scan(files)
	ticker := time.NewTicker(rescanEvery)
	defer ticker.Stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	defer func() { // never leave a waiter hanging after the inbox stops
		in.mu.Lock()
		select {
		case <-in.idle:
		default:
			close(in.idle)
		}
		in.mu.Unlock()
	}()
	for {
		in.setBusy(files)
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			in.touch(files, ev)
		case err, ok := <-werrs:
			if !ok {
				werrs = nil
				continue
			}
			in.log.Warn("inbox: watcher error, rescanning", "err", err)
			in.scan(files)
		case <-ticker.C:
			in.scan(files)
		case <-timer.C:
			in.processDue(ctx, files)
		}
		resetTimer(timer, files)
		in.setBusy(files)
	}
}

func resetTimer(t *time.Timer, files map[string]*pending) {
	if len(files) == 0 {
		t.Stop()
		return
	}
	var next time.Time
	for _, f := range files {
		if next.IsZero() || f.due.Before(next) {
			next = f.due
		}
	}
	t.Reset(max(time.Until(next), 0))
}

// candidate reports whether name is a bundle the inbox should look at.
func candidate(name string) bool {
	return name != "" && !strings.HasPrefix(name, ".") && !strings.HasSuffix(name, ".part") &&
		!strings.HasSuffix(name, ".reason")
}

func (in *Inbox) touch(files map[string]*pending, ev fsnotify.Event) {
	if filepath.Dir(ev.Name) != filepath.Clean(in.dir) {
		return
	}
	name := filepath.Base(ev.Name)
	if !candidate(name) {
		return
	}
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		delete(files, name) // renamed away or deleted; a rename in shows as Create
		return
	}
	// A file renamed in (the documented NAME.part -> NAME delivery) is
	// complete when it appears: look at once. A plain copy also starts with
	// Create, reads as truncated, and is looked at again after each write
	// goes quiet.
	delay := in.quiet
	if ev.Has(fsnotify.Create) {
		delay = 0
	}
	in.see(files, name, time.Now().Add(delay))
}

// see records name's current size and mtime and when to look at it again.
// An entry that is not a regular file is quarantined at once.
func (in *Inbox) see(files map[string]*pending, name string, due time.Time) {
	st, err := os.Lstat(filepath.Join(in.dir, name))
	if err != nil || !st.Mode().IsRegular() {
		delete(files, name)
		if err == nil {
			in.quarantine(name)
		}
		return
	}
	f := files[name]
	if f == nil {
		f = &pending{}
		files[name] = f
	}
	f.due, f.size, f.mtime = due, st.Size(), st.ModTime()
}

func (in *Inbox) scan(files map[string]*pending) {
	entries, err := os.ReadDir(in.dir)
	if err != nil {
		in.log.Error("inbox: rescan failed", "path", in.dir, "err", err)
		return
	}
	for _, e := range entries {
		if !candidate(e.Name()) {
			continue
		}
		if !e.Type().IsRegular() {
			in.quarantine(e.Name())
			continue
		}
		if _, known := files[e.Name()]; !known {
			in.see(files, e.Name(), time.Now().Add(in.quiet))
		}
	}
}

// processDue handles the files whose quiet period is over, oldest first,
// so bundles dropped while the agent was stopped apply in delivery order.
func (in *Inbox) processDue(ctx context.Context, files map[string]*pending) {
	now := time.Now()
	var due []string
	for name, f := range files {
		if !f.due.After(now) {
			due = append(due, name)
		}
	}
	sort.Slice(due, func(i, j int) bool {
		a, b := files[due[i]], files[due[j]]
		if !a.mtime.Equal(b.mtime) {
			return a.mtime.Before(b.mtime)
		}
		return due[i] < due[j]
	})
	for _, name := range due {
		if ctx.Err() != nil {
			return
		}
		in.processOne(ctx, files, name)
	}
}

func (in *Inbox) processOne(ctx context.Context, files map[string]*pending, name string) {
	f := files[name]
	path := filepath.Join(in.dir, name)
	st, err := os.Lstat(path)
	if err != nil || !st.Mode().IsRegular() {
		delete(files, name)
		return
	}
	if st.Size() != f.size || !st.ModTime().Equal(f.mtime) {
		in.see(files, name, time.Now().Add(in.quiet)) // still being written
		return
	}
	data, err := readLimited(path, st)
	if err == nil {
		// A copy in progress reads as truncated: wait for it to settle
		// before refusing it (and before auditing anything).
		held := false
		hold := func(err error) bool {
			held = incomplete(err) && time.Since(st.ModTime()) < in.settle
			return held
		}
		_, _, err = in.p.applyUnless(ctx, data, "bundle:"+name, hold)
		if held {
			in.log.Debug("inbox: waiting for a file to settle", "path", path, "err", err)
			in.see(files, name, st.ModTime().Add(in.settle))
			in.report(name, "waiting")
			return
		}
	} else if errors.Is(err, ErrNotRegular) {
		// Swapped for a symlink or FIFO since the Lstat above.
		delete(files, name)
		in.quarantine(name)
		return
	} else if Refused(err) {
		in.p.refuse(ctx, "bundle:"+name, err)
	}
	delete(files, name)
	switch {
	case err == nil:
		in.move(name, DoneDir, "")
		in.report(name, "done")
	case Refused(err):
		in.move(name, RejectedDir, Reason(err))
		in.report(name, "rejected")
	default:
		// Not the bundle's fault (store closed, shutdown): leave it for the
		// next rescan.
		in.log.Error("inbox: bundle not processed, will retry", "path", path, "err", err)
		in.report(name, "retry")
	}
}

func (in *Inbox) report(name, outcome string) {
	if in.observe != nil {
		in.observe(name, outcome)
	}
}

// readLimited reads a bundle file, refusing one larger than any bundle the
// reader would accept before reading it. It opens without following a
// symlink and without blocking on a FIFO, and reads only the regular file
// that was looked at (seen: the same inode), so an entry swapped after the
// check is not read.
func readLimited(path string, seen os.FileInfo) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), ErrNotRegular)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || (seen != nil && !os.SameFile(st, seen)) {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), ErrNotRegular)
	}
	if st.Size() > MaxUncompressed {
		return nil, fmt.Errorf("%w: file of %d bytes, larger than %d", ErrTooBig, st.Size(), MaxUncompressed)
	}
	// Sized by the stat (plus one byte, to see the end), not grown from
	// 512 bytes by doubling; a file that grew since is read on, within the
	// limit.
	data := make([]byte, st.Size()+1)
	n, err := io.ReadFull(f, data)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		data = data[:n]
	case err != nil:
		return nil, err
	default:
		rest, err := io.ReadAll(io.LimitReader(f, MaxUncompressed+1-int64(n)))
		if err != nil {
			return nil, err
		}
		data = append(data, rest...)
	}
	if len(data) > MaxUncompressed {
		return nil, fmt.Errorf("%w: file larger than %d bytes", ErrTooBig, MaxUncompressed)
	}
	return data, nil
}

// move puts name into done/ or rejected/ (with NAME.reason), never
// replacing an earlier file of the same name.
func (in *Inbox) move(name, sub, reason string) {
	dest := filepath.Join(in.dir, sub, name)
	if _, err := os.Lstat(dest); err == nil {
		stamp := time.Now().UTC().Format("20060102T150405.000000000Z")
		base, ext, _ := strings.Cut(name, ".")
		if ext != "" {
			ext = "." + ext
		}
		dest = filepath.Join(in.dir, sub, base+"-"+stamp+ext)
	}
	if reason != "" {
		line := strings.ReplaceAll(reason, "\n", "; ") + "\n"
		if err := os.WriteFile(dest+".reason", []byte(line), 0o600); err != nil {
			in.log.Error("inbox: reason not written", "path", dest+".reason", "err", err)
		}
	}
	if err := os.Rename(filepath.Join(in.dir, name), dest); err != nil {
		in.log.Error("inbox: bundle not moved", "path", name, "to", dest, "err", err)
		return
	}
	in.log.Info("inbox: bundle processed", "path", name, "to", sub)
}

// quarantine moves an entry that is not a regular file (a symlink, FIFO,
// socket, device or folder) out of the way into rejected/, with a reason,
// and audits it as BUNDLE_REJECTED: it is not a bundle, and left where it
// is it would be skipped at every scan, unseen. The entry is renamed, never
// opened or followed. done/ and rejected/ themselves stay.
func (in *Inbox) quarantine(name string) {
	if name == DoneDir || name == RejectedDir {
		return
	}
	st, err := os.Lstat(filepath.Join(in.dir, name))
	if err != nil || st.Mode().IsRegular() {
		return
	}
	kind := fileKind(st.Mode())
	err = fmt.Errorf("%s is a %s: %w", name, kind, ErrNotRegular)
	in.p.refuse(context.Background(), "bundle:"+name, err)
	in.move(name, RejectedDir, Reason(err))
	in.report(name, "rejected")
}

func fileKind(m os.FileMode) string {
	switch {
	case m&os.ModeSymlink != 0:
		return "symbolic link"
	case m&os.ModeNamedPipe != 0:
		return "FIFO"
	case m&os.ModeSocket != 0:
		return "socket"
	case m&os.ModeDevice != 0:
		return "device"
	case m.IsDir():
		return "folder"
	}
	return "special file"
}
