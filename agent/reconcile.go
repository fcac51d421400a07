package agent

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"warden/reconcile"
	"warden/schema"
)

// startControllers starts the controller manager: files, permissions,
// certificates, settings and the privilege controllers (sudoers, acl,
// groups), with Settings changes applied to the API and the logger
// without a restart.
func (a *agent) startControllers(ctx context.Context, reg prometheus.Registerer, l reconcile.Listen) error {
	m, err := reconcile.NewManager(reconcile.Options{Root: a.opts.Root, Store: a.store, Audit: a.audit,
		Logger: a.log, Registry: reg, Listen: l, LogLevel: a.settingsLevel()})
	if err != nil {
		return err
	}
	m.OnSettings(func(s *schema.SettingsSpec) { a.api.SetAllowedHosts(s.AllowedHosts) })
	if _, err := m.AddCertificates(a.server); err != nil {
		return err
	}
	// Grants in force made true on the machine (sudoers drop-ins, ACL
	// entries) and LeastPrivilege's admin groups kept.
	if _, err := m.AddPrivileges(reconcile.PrivilegeOptions{}); err != nil {
		return err
	}
	a.manager = m
	if err := a.startPlugins(ctx, m, l); err != nil {
		return err
	}
	a.goRun(ctx, "reconcile", m.Run)
	return nil
}
