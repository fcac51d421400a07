package engine

import (
	"encoding/json"
	"errors"
	"mime"
	"net/http"

	"github.com/gorilla/mux"

	"warden/policy"
)

type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func jsonBody(w http.ResponseWriter, r *http.Request) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, apiError{"Content-Type must be application/json", "unsupported_media_type"})
		return false
	}
	return true
}

// EvaluateHandler serves POST /api/v1/evaluate; `?explain=true` adds the
// filters that did and did not match.
func (e *Engine) EvaluateHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !jsonBody(w, r) {
			return
		}
		req, err := policy.DecodeRequest(r.Body)
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, policy.ErrRequestTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			writeJSON(w, status, apiError{err.Error(), "bad_request"})
			return
		}
		res, err := e.Evaluate(r.Context(), req, r.URL.Query().Get("explain") == "true")
		switch {
		case errors.Is(err, ErrRateLimited):
			w.Header().Set("Retry-After", "60")
			writeJSON(w, http.StatusTooManyRequests, apiError{err.Error(), "rate_limited"})
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, apiError{err.Error(), "unavailable"})
		default:
			writeJSON(w, http.StatusOK, res)
		}
	})
}

// DecideHandler serves POST /api/v1/approvals/{id}/approve and .../deny
// with body {"approver": "alice"}.
func (e *Engine) DecideHandler(approve bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !jsonBody(w, r) {
			return
		}
		var body struct {
			Approver string `json:"approver"`
		}
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil || body.Approver == "" {
			writeJSON(w, http.StatusBadRequest, apiError{"body must be {\"approver\": \"NAME\"}", "bad_request"})
			return
		}
		a, err := e.Decide(mux.Vars(r)["id"], body.Approver, approve)
		switch {
		case errors.Is(err, ErrNoApproval):
			writeJSON(w, http.StatusNotFound, apiError{err.Error(), "not_found"})
		case errors.Is(err, ErrNotAnApprover):
			writeJSON(w, http.StatusForbidden, apiError{err.Error(), "forbidden"})
		case errors.Is(err, ErrAlreadyDecided):
			writeJSON(w, http.StatusConflict, apiError{err.Error(), "conflict"})
		case err != nil:
			writeJSON(w, http.StatusInternalServerError, apiError{err.Error(), "internal"})
		default:
			writeJSON(w, http.StatusOK, a)
		}
	})
}

// ApprovalsHandler serves GET /api/v1/approvals.
func (e *Engine) ApprovalsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		as, err := e.Approvals()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{err.Error(), "internal"})
			return
		}
		if as == nil {
			as = []Approval{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"approvals": as})
	})
}

// GrantsHandler serves GET /api/v1/grants.
func (e *Engine) GrantsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		gs, err := e.Grants()
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{err.Error(), "internal"})
			return
		}
		if gs == nil {
			gs = []Grant{}
		}
		writeJSON(w, http.StatusOK, map[string]any{"grants": gs})
	})
}

// EnrollHandler serves POST /api/v1/mfa/{user}/enroll: the otpauth URI is
// in this answer only.
func (e *Engine) EnrollHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uri, err := e.EnrollMFA(mux.Vars(r)["user"])
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{err.Error(), "internal"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"user": mux.Vars(r)["user"], "otpauth": uri})
	})
}
