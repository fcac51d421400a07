package agent

import (
	"context"
	"net/http"

	"warden/api"
	"warden/engine"
)

// startEngine compiles the applied policies and returns the engine's
// routes for the API.
func (a *agent) startEngine(ctx context.Context) ([]api.Route, error) {
	e, err := engine.New(engine.Options{Store: a.store, Audit: a.audit, Logger: a.log, Notify: a.notify})
	if err != nil {
		return nil, err
	}
	a.engine = e
	a.goRun(ctx, "engine", e.Run)
	admin := []string{api.RoleAdmin}
	return []api.Route{
		{Method: http.MethodGet, Path: "/api/v1/approvals", Roles: admin, Handler: e.ApprovalsHandler()},
		{Method: http.MethodPost, Path: "/api/v1/approvals/{id}/approve", Roles: admin, Handler: e.DecideHandler(true)},
		{Method: http.MethodPost, Path: "/api/v1/approvals/{id}/deny", Roles: admin, Handler: e.DecideHandler(false)},
		{Method: http.MethodGet, Path: "/api/v1/grants", Roles: []string{api.RoleAdmin, api.RolePlugin}, Handler: e.GrantsHandler()},
		{Method: http.MethodPost, Path: "/api/v1/mfa/{user}/enroll", Roles: admin, Handler: e.EnrollHandler()},
	}, nil
}

// notify publishes monitor-notify notifications once the broker serves.
func (a *agent) notify(payload []byte) {
	if a.notifier != nil {
		a.notifier(payload)
	}
}
