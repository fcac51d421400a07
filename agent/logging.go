package agent

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// levelOf maps Settings logging.level to slog levels.
func levelOf(s string) slog.Level {
	switch s {
	case "Trace", "Debug":
		return slog.LevelDebug
	case "Warning":
		return slog.LevelWarn
	case "Error", "Critical":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// maxLogSize is when logs/agent.log is rotated to agent.log.1.
const maxLogSize = 10 << 20

// rotatingFile is logs/agent.log, rotated by size, one old file kept.
type rotatingFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
	size int64
}

func openLog(dir string) (*rotatingFile, error) {
	r := &rotatingFile{path: filepath.Join(dir, "agent.log")}
	return r, r.open()
}

func (r *rotatingFile) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *rotatingFile) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.size+int64(len(p)) > maxLogSize {
		r.f.Close()
		os.Rename(r.path, r.path+".1")
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *rotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.f.Close()
}

func newLogger(w io.Writer, level *slog.LevelVar) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}
