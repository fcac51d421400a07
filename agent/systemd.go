package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The agent speaks systemd's notify protocol when NOTIFY_SOCKET is set
// (Type=notify units); elsewhere every call here does nothing.

// notifyReady tells systemd the agent serves (after run/agent.json exists).
func (a *agent) notifyReady() {
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		a.log.Warn("sd_notify READY=1", "err", err)
	}
}

// notifyStopping tells systemd a clean stop has begun.
func (a *agent) notifyStopping() {
	daemon.SdNotify(false, daemon.SdNotifyStopping)
}

// runWatchdog pings systemd's watchdog at half the unit's WatchdogSec=, but
// only while alive says the store and the controller runtime answer: a
// wedged agent stops pinging and systemd restarts it (Restart=always).
func (a *agent) runWatchdog(ctx context.Context) error {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil || every == 0 {
		return nil // no watchdog asked for
	}
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := a.alive(ctx, every/2); err != nil {
			a.log.Error("watchdog: not pinging systemd", "err", err)
			continue
		}
		daemon.SdNotify(false, daemon.SdNotifyWatchdog)
	}
}

// alive checks the parts whose failure the agent cannot survive: the store
// answers a read transaction, and the controller runtime's loop answers
// within timeout.
func (a *agent) alive(ctx context.Context, timeout time.Duration) error {
	if _, _, err := a.store.LastAudit(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if a.manager == nil {
		return fmt.Errorf("controller runtime not started")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := a.manager.Ping(ctx); err != nil {
		return fmt.Errorf("controller runtime: %w", err)
	}
	return nil
}
