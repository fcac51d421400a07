package agent

import (
	"context"

	"warden/elevate"
	"warden/engine"
	"warden/policy"
)

// startElevate opens the user socket (run/warden.sock) and serves it until
// stop.
func (a *agent) startElevate() error {
	srv, err := elevate.Listen(elevate.Options{Root: a.opts.Root, Engine: socketEngine{a.engine},
		Audit: a.audit, Logger: a.log})
	if err != nil {
		return err
	}
	a.elevate = srv
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		srv.Serve()
	}()
	return nil
}

// socketEngine is the engine as the user socket sees it: every call names
// the kernel-attested Actor as the caller.
type socketEngine struct{ e *engine.Engine }

func caller(a *elevate.Actor) engine.Caller {
	return engine.Caller{Kind: engine.CallerUser, Name: a.Name, UID: a.UID, PID: a.PID, Groups: a.Groups}
}

func (s socketEngine) Evaluate(ctx context.Context, a *elevate.Actor, req *policy.Request) (engine.Result, engine.Record, error) {
	return s.e.EvaluateDeferred(ctx, caller(a), req, false)
}

func (s socketEngine) WaitApproval(ctx context.Context, id string) (engine.Approval, error) {
	return s.e.WaitApproval(ctx, id)
}

func (s socketEngine) Decide(ctx context.Context, a *elevate.Actor, id string, approve bool, reason string) (engine.Approval, error) {
	return s.e.Decide(ctx, caller(a), id, approve, reason)
}

func (s socketEngine) Approvals(a *elevate.Actor) ([]engine.Approval, error) {
	return s.e.ApprovalsFor(caller(a))
}
