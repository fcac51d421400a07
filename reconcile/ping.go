package reconcile

import (
	"context"
	"errors"
)

// ErrNotRunning is Ping's answer when the manager's loop is not running.
var ErrNotRunning = errors.New("reconcile: manager not running")

// Ping asks the manager's main loop to answer, and waits for it until ctx
// ends. A nil error means the loop is running and not stuck: the service
// watchdog pings systemd only then.
func (m *Manager) Ping(ctx context.Context) error {
	if !m.running.Load() {
		return ErrNotRunning
	}
	done := make(chan struct{})
	select {
	case m.pingCh <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
