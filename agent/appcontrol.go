package agent

import (
	"context"
	"os"

	"github.com/prometheus/client_golang/prometheus"

	"warden/appcontrol"
)

// startAppControl starts the exec controller that enforces
// ApplicationControl policies. It needs root (fanotify permission events);
// an agent run as another user says so and runs without it. The
// controller marks nothing until a generation has an ApplicationControl
// policy (or an allow-list default). Its counters go to reg.
func (a *agent) startAppControl(ctx context.Context, reg prometheus.Registerer) error {
	if os.Geteuid() != 0 {
		a.log.Info("application control not available: the agent does not run as root")
		return nil
	}
	c, err := appcontrol.New(appcontrol.Options{Root: a.opts.Root, Store: a.store, Audit: a.audit, Logger: a.log, Notify: a.notify})
	if err != nil {
		return err
	}
	for _, m := range c.Collectors() {
		if err := reg.Register(m); err != nil {
			return err
		}
	}
	a.appctl = c
	a.goRun(ctx, "appcontrol", c.Run)
	return nil
}
