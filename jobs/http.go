package jobs

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"warden/api"
)

// RunHandler serves POST /api/v1/jobs/{id}/run: 202 with {"job", "run"}
// once the run is queued; 404 for an unknown job, 409 when concurrency
// forbid and a run is going. The request body, if any, is ignored.
func (s *Scheduler) RunHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := mux.Vars(r)["id"]
		by := ""
		if ident, ok := api.IdentityOf(r); ok {
			by = ident.Role + "/" + ident.Name
		}
		runID, err := s.RunNow(id, by)
		switch {
		case errors.Is(err, ErrUnknownJob):
			api.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		case errors.Is(err, ErrBusy):
			api.WriteError(w, http.StatusConflict, "conflict", err.Error())
		case err != nil:
			api.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		default:
			w.Header().Set("Location", "/api/v1/jobs/"+id+"/runs")
			api.WriteJSON(w, http.StatusAccepted, map[string]string{"job": id, "run": runID})
		}
	})
}

// ListHandler serves GET /api/v1/jobs: {"jobs": [JobStatus...]}.
func (s *Scheduler) ListHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]any{"jobs": s.List()})
	})
}

// RunsHandler serves GET /api/v1/jobs/{id}/runs: {"job", "runs": [Run...]},
// newest first. ?limit=N (default 20, at most 500); ?output=false leaves
// task output out; ?run=ID answers that one run only.
func (s *Scheduler) RunsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := mux.Vars(r)["id"]
		q := r.URL.Query()
		limit := 20
		if v := q.Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 500 {
				api.WriteError(w, http.StatusBadRequest, "bad_request", "limit must be 1..500")
				return
			}
			limit = n
		}
		runs, err := s.Runs(id, limit)
		if want := q.Get("run"); err == nil && want != "" {
			runs, err = s.oneRun(id, want)
		}
		switch {
		case errors.Is(err, ErrUnknownJob), errors.Is(err, ErrUnknownRun):
			api.WriteError(w, http.StatusNotFound, "not_found", err.Error())
			return
		case err != nil:
			api.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
			return
		}
		if q.Get("output") == "false" {
			for _, run := range runs {
				for i := range run.Tasks {
					run.Tasks[i].Output = ""
				}
			}
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"job": id, "runs": runs})
	})
}

func (s *Scheduler) oneRun(job, runID string) ([]*Run, error) {
	r, ok, err := s.Lookup(runID)
	if err != nil {
		return nil, err
	}
	if !ok || r.Job != job {
		return nil, fmt.Errorf("run %q of job %q: %w", runID, job, ErrUnknownRun)
	}
	return []*Run{r}, nil
}
