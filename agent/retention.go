package agent

import (
	"context"
	"time"

	"warden/audit"
	"warden/schema"
)

// pruneEvery is how often old audit events and drift records are pruned.
const pruneEvery = time.Hour

// runRetention prunes audit events and closed drift records older than the
// retention Settings give (15 days by default), at start and then hourly.
func (a *agent) runRetention(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		set := a.store.Current().Settings()
		days := set.Audit.RetentionDays
		if days == 0 {
			days = set.Logging.RetentionDays
		}
		if days == 0 {
			days = schema.DefaultRetentionDays
		}
		cutoff := time.Now().Add(-time.Duration(days) * 24 * time.Hour)
		if n, err := audit.Prune(a.store, cutoff); err != nil {
			a.log.Error("prune audit events", "err", err)
		} else if n > 0 {
			a.log.Info("pruned audit events", "count", n, "before", cutoff)
		}
		a.pruneServiceLogs(set)
		if _, err := a.store.PruneDrift(cutoff); err != nil {
			a.log.Error("prune drift records", "err", err)
		}
		t.Reset(pruneEvery)
	}
}

// pruneServiceLogs removes rotated service logs older than Settings
// logging.retentionDays (15 by default). Under the journal there are none.
func (a *agent) pruneServiceLogs(set *schema.SettingsSpec) {
	if a.logFile == nil {
		return
	}
	days := set.Logging.RetentionDays
	if days == 0 {
		days = schema.DefaultRetentionDays
	}
	cutoff := time.Now().Add(-time.Duration(days) * 24 * time.Hour)
	if n, err := pruneLogs(a.logFile.dir, cutoff); err != nil {
		a.log.Error("prune service logs", "err", err)
	} else if n > 0 {
		a.log.Info("pruned service logs", "count", n, "before", cutoff)
	}
}
