package agent

import (
	"context"
	"net/http"

	"warden/api"
	"warden/jobs"
)

// startJobs starts the job scheduler (it fires Startup jobs as it starts)
// and returns its routes for the API. The scheduler stops with ctx: runs
// still going are stopped (SIGTERM, SIGKILL after 1 s) and recorded before
// the store closes.
func (a *agent) startJobs(ctx context.Context) ([]api.Route, error) {
	s, err := jobs.New(jobs.Options{Root: a.opts.Root, Store: a.store, Audit: a.audit, Logger: a.log,
		Cgroups: a.cgroups})
	if err != nil {
		return nil, err
	}
	a.goRun(ctx, "jobs", s.Run)
	admin := []string{api.RoleAdmin}
	return []api.Route{
		{Method: http.MethodGet, Path: "/api/v1/jobs", Roles: admin, Handler: s.ListHandler()},
		{Method: http.MethodPost, Path: "/api/v1/jobs/{id}/run", Roles: admin, Handler: s.RunHandler()},
		{Method: http.MethodGet, Path: "/api/v1/jobs/{id}/runs", Roles: admin, Handler: s.RunsHandler()},
	}, nil
}
