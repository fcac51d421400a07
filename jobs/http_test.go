package jobs

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gorilla/mux"
)

func TestHTTPHandlers(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(jobDoc("inventory", `{"trigger": {"schedule": "*/5 * * * *", "timeZone": "UTC"}, "tasks": [{"command": "/bin/echo", "args": ["hello"]}]}`),
		jobDoc("busy", `{"trigger": {}, "tasks": [{"command": "/bin/sh", "args": ["-c", "sleep 1000"]}]}`))
	h.start()
	r := mux.NewRouter()
	r.Handle("/api/v1/jobs", h.s.ListHandler()).Methods(http.MethodGet)
	r.Handle("/api/v1/jobs/{id}/run", h.s.RunHandler()).Methods(http.MethodPost)
	r.Handle("/api/v1/jobs/{id}/runs", h.s.RunsHandler()).Methods(http.MethodGet)
	call := func(method, path string, out any) int {
		t.Helper()
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
		if out != nil {
			if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, rec.Body)
			}
		}
		return rec.Code
	}

	var started struct{ Job, Run string }
	if code := call("POST", "/api/v1/jobs/inventory/run", &started); code != http.StatusAccepted || started.Run == "" {
		t.Fatalf("run: %d %+v, want 202 with a run id", code, started)
	}
	h.waitRuns("inventory", 1)
	var runs struct {
		Job  string
		Runs []Run
	}
	if code := call("GET", "/api/v1/jobs/inventory/runs", &runs); code != 200 || len(runs.Runs) != 1 ||
		runs.Runs[0].ID != started.Run || runs.Runs[0].Tasks[0].Output != "hello\n" || runs.Runs[0].Trigger != TriggerManual {
		t.Errorf("runs: %d %+v", code, runs)
	}
	call("GET", "/api/v1/jobs/inventory/runs?output=false&run="+started.Run, &runs)
	if len(runs.Runs) != 1 || runs.Runs[0].Tasks[0].Output != "" {
		t.Errorf("runs without output: %+v", runs)
	}
	var list struct{ Jobs []JobStatus }
	if code := call("GET", "/api/v1/jobs", &list); code != 200 || len(list.Jobs) != 2 {
		t.Fatalf("list: %d %+v", code, list)
	}
	inv := list.Jobs[1]
	if inv.ID != "inventory" || inv.NextRun == nil || inv.LastRun == nil || inv.LastRun.ID != started.Run ||
		inv.LastRun.State != StateSucceeded || inv.State != JobIdle || !inv.Enabled {
		t.Errorf("inventory status = %+v", inv)
	}
	if code := call("POST", "/api/v1/jobs/busy/run", nil); code != http.StatusAccepted {
		t.Errorf("busy first run: %d", code)
	}
	h.activeRun("busy")
	var e struct{ Error, Code string }
	if code := call("POST", "/api/v1/jobs/busy/run", &e); code != http.StatusConflict || e.Code != "conflict" {
		t.Errorf("busy second run: %d %+v, want 409 conflict", code, e)
	}
	for _, p := range []string{"/api/v1/jobs/nope/runs", "/api/v1/jobs/inventory/runs?run=nope"} {
		if code := call("GET", p, &e); code != http.StatusNotFound || e.Code != "not_found" {
			t.Errorf("%s: %d %+v, want 404", p, code, e)
		}
	}
	if code := call("POST", "/api/v1/jobs/nope/run", &e); code != http.StatusNotFound {
		t.Errorf("run unknown: %d, want 404", code)
	}
	if code := call("GET", "/api/v1/jobs/inventory/runs?limit=0", &e); code != http.StatusBadRequest {
		t.Errorf("limit=0: %d, want 400", code)
	}
}
