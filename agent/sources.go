package agent

import (
	"context"
	"path/filepath"

	"warden/source"
)

// startSources starts the ways desired state arrives: the airgapped inbox
// now, the backend sync when Settings name a backend. All go through one
// pipeline.
func (a *agent) startSources(ctx context.Context) {
	a.pipeline = source.NewPipeline(a.store, a.audit, filepath.Join(a.opts.Root, "trust"))
	a.pipeline.Logger = a.log
	inbox := source.NewInbox(filepath.Join(a.opts.Root, "inbox"), a.pipeline, a.log)
	a.inbox = inbox
	a.goRun(ctx, "inbox", inbox.Run)
	a.goRun(ctx, "sync", source.NewSync(a.store, a.pipeline, a.opts.Root, a.log).Run)
}

// goRun runs a long-lived part until ctx ends; stop waits for it.
func (a *agent) goRun(ctx context.Context, name string, run func(context.Context) error) {
	a.bg.Add(1)
	go func() {
		defer a.bg.Done()
		if err := run(ctx); err != nil && ctx.Err() == nil {
			a.log.Error("component stopped", "component", name, "err", err)
		}
	}()
}
