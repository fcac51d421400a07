package reconcile

import "context"

type Groups struct {
	m                  *Manager
	ctrl               *Controller
	sudoers, groupFile string
}

func (a *Groups) Reconcile(ctx context.Context, key string) (Result, error) { return Result{}, nil }
