package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// levelOf maps Settings logging.level (and --log-level) to slog levels.
func levelOf(s string) slog.Level {
	switch strings.ToLower(s) {
	case "trace", "debug":
		return slog.LevelDebug
	case "warning", "warn":
		return slog.LevelWarn
	case "error", "critical":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// ParseLogLevel checks a --log-level value: the Settings names (Trace,
// Debug, Information, Warning, Error, Critical) or slog's (debug, info,
// warn, error), any case.
func ParseLogLevel(s string) error {
	switch strings.ToLower(s) {
	case "", "trace", "debug", "information", "info", "warning", "warn", "error", "critical":
		return nil
	}
	return fmt.Errorf("--log-level %q: want debug, info, warning or error", s)
}

// UnderJournal reports whether stderr is connected to systemd's journal:
// JOURNAL_STREAM names the device and inode of the journal's stream, and
// stderr must be that very stream (not redirected by the unit or a shell).
func UnderJournal() bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		return false
	}
	return strconv.FormatUint(st.Dev, 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

// newHandler builds the agent's slog handler writing to w, JSON or text.
func newHandler(w io.Writer, format string, level slog.Leveler) slog.Handler {
	o := &slog.HandlerOptions{Level: level}
	if format == "text" {
		return slog.NewTextHandler(w, o)
	}
	return slog.NewJSONHandler(w, o)
}

// journalHandler prefixes every record with its syslog priority ("<3>"),
// which journald reads from a service's stderr (SyslogLevelPrefix=, on by
// default), so `journalctl -p warning` filters warden's logs.
type journalHandler struct {
	inner slog.Handler
	w     *prioWriter
}

// prioWriter holds the priority of the record being written; the handler
// sets it under mu, and slog's handlers write one record per Write.
type prioWriter struct {
	mu   sync.Mutex
	prio int
	out  io.Writer
}

func (p *prioWriter) Write(b []byte) (int, error) {
	line := make([]byte, 0, len(b)+3)
	line = append(line, '<', byte('0'+p.prio), '>')
	line = append(line, b...)
	if _, err := p.out.Write(line); err != nil {
		return 0, err
	}
	return len(b), nil
}

func newJournalHandler(out io.Writer, format string, level slog.Leveler) slog.Handler {
	w := &prioWriter{out: out}
	return &journalHandler{inner: newHandler(w, format, level), w: w}
}

// journalPriority maps slog levels to syslog priorities (sd-daemon.h).
func journalPriority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3 // err
	case l >= slog.LevelWarn:
		return 4 // warning
	case l >= slog.LevelInfo:
		return 6 // info
	}
	return 7 // debug
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.prio = journalPriority(r.Level)
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), w: h.w}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), w: h.w}
}

// maxLogSize is when logs/agent.log is rotated early, before the day ends.
const maxLogSize = 10 << 20

// dailyFile is logs/agent.log. It is rotated when the UTC day changes (or
// it grows past maxLogSize) to agent-YYYY-MM-DD[.N].log, and pruneLogs
// removes rotated files older than the retention (15 days by default, the
// reference pages' window), so old logs are kept by age, not by count.
type dailyFile struct {
	mu     sync.Mutex
	dir    string
	f      *os.File
	size   int64
	day    string // UTC day the current file's lines belong to
	now    func() time.Time
	closed bool
}

func openLog(dir string) (*dailyFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	d := &dailyFile{dir: dir, now: time.Now}
	return d, d.open()
}

func (d *dailyFile) path() string { return filepath.Join(d.dir, "agent.log") }

func (d *dailyFile) open() error {
	f, err := os.OpenFile(d.path(), os.O_WRONLY|os.O_CREATE|os.O_APPEND|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	d.f, d.size = f, st.Size()
	d.day = st.ModTime().UTC().Format(time.DateOnly)
	if st.Size() == 0 {
		d.day = d.now().UTC().Format(time.DateOnly)
	}
	return nil
}

func (d *dailyFile) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return len(p), nil
	}
	today := d.now().UTC().Format(time.DateOnly)
	if today != d.day || d.size+int64(len(p)) > maxLogSize {
		if err := d.rotate(); err != nil {
			return 0, err
		}
		d.day = today
	}
	n, err := d.f.Write(p)
	d.size += int64(n)
	return n, err
}

// rotate renames agent.log to the first free agent-DAY[.N].log.
func (d *dailyFile) rotate() error {
	d.f.Close()
	name := filepath.Join(d.dir, "agent-"+d.day+".log")
	for i := 1; ; i++ {
		if _, err := os.Lstat(name); os.IsNotExist(err) {
			break
		}
		name = filepath.Join(d.dir, fmt.Sprintf("agent-%s.%d.log", d.day, i))
	}
	if err := os.Rename(d.path(), name); err != nil {
		return err
	}
	return d.open()
}

func (d *dailyFile) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return d.f.Close()
}

// pruneLogs removes rotated logs (agent-*.log) last written before cutoff.
func pruneLogs(dir string, cutoff time.Time) (int, error) {
	names, err := filepath.Glob(filepath.Join(dir, "agent-*.log"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		st, err := os.Lstat(name)
		if err != nil || !st.Mode().IsRegular() || !st.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(name); err == nil {
			n++
		}
	}
	return n, nil
}

// openLogs sets up a.log: under the journal stderr only, with priorities;
// elsewhere LogOutput and logs/agent.log, rotated daily.
func (a *agent) openLogs() error {
	if a.opts.Journal {
		a.log = slog.New(newJournalHandler(a.opts.LogOutput, a.opts.LogFormat, a.level))
		return nil
	}
	f, err := openLog(filepath.Join(a.opts.Root, "logs"))
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	a.logFile = f
	a.log = slog.New(newHandler(io.MultiWriter(a.opts.LogOutput, f), a.opts.LogFormat, a.level))
	return nil
}

// settingsLevel is the level Settings may change at run time: none when
// --log-level pinned it.
func (a *agent) settingsLevel() *slog.LevelVar {
	if a.opts.LogLevel != "" {
		return nil
	}
	return a.level
}
