package reconcile

import "context"

type ACL struct {
	m    *Manager
	ctrl *Controller
}

func (a *ACL) Reconcile(ctx context.Context, key string) (Result, error) { return Result{}, nil }
