package engine

import (
	"errors"
	"mime"
	"net/http"

	"github.com/gorilla/mux"

	"warden/api"
	"warden/policy"
)

// Error codes of this package's answers.
const (
	codeBadRequest = "bad_request"
	codeInternal   = "internal"
)

// EvaluateHandler serves POST /api/v1/evaluate; `?explain=true` adds the
// filters that did and did not match.
func (e *Engine) EvaluateHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			api.WriteError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "Content-Type must be application/json")
			return
		}
		req, err := policy.DecodeRequest(r.Body)
		if err != nil {
			status := http.StatusBadRequest
			if errors.Is(err, policy.ErrRequestTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			api.WriteError(w, status, codeBadRequest, err.Error())
			return
		}
		res, err := e.Evaluate(r.Context(), req, r.URL.Query().Get("explain") == "true")
		switch {
		case errors.Is(err, ErrRateLimited):
			w.Header().Set("Retry-After", "60")
			api.WriteError(w, http.StatusTooManyRequests, "rate_limited", err.Error())
		case err != nil:
			api.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		default:
			api.WriteJSON(w, http.StatusOK, res)
		}
	})
}

// DecideHandler serves POST /api/v1/approvals/{id}/approve and .../deny
// with body {"approver": "alice"}.
func (e *Engine) DecideHandler(approve bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Approver string `json:"approver"`
		}
		if !api.DecodeJSON(w, r, &body) {
			return
		}
		if body.Approver == "" {
			api.WriteError(w, http.StatusBadRequest, codeBadRequest, `body must be {"approver": "NAME"}`)
			return
		}
		a, err := e.Decide(mux.Vars(r)["id"], body.Approver, approve)
		switch {
		case errors.Is(err, ErrNoApproval):
			api.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		case errors.Is(err, ErrNotAnApprover):
			api.WriteError(w, http.StatusForbidden, "forbidden", err.Error())
		case errors.Is(err, ErrAlreadyDecided):
			api.WriteError(w, http.StatusConflict, "conflict", err.Error())
		case err != nil:
			api.WriteError(w, http.StatusInternalServerError, codeInternal, err.Error())
		default:
			api.WriteJSON(w, http.StatusOK, a)
		}
	})
}

// ApprovalsHandler serves GET /api/v1/approvals.
func (e *Engine) ApprovalsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		as, err := e.Approvals()
		if err != nil {
			api.WriteError(w, http.StatusInternalServerError, codeInternal, err.Error())
			return
		}
		if as == nil {
			as = []Approval{}
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"approvals": as})
	})
}

// GrantsHandler serves GET /api/v1/grants.
func (e *Engine) GrantsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		gs, err := e.Grants()
		if err != nil {
			api.WriteError(w, http.StatusInternalServerError, codeInternal, err.Error())
			return
		}
		if gs == nil {
			gs = []Grant{}
		}
		api.WriteJSON(w, http.StatusOK, map[string]any{"grants": gs})
	})
}

// EnrollHandler serves POST /api/v1/mfa/{user}/enroll: the otpauth URI is
// in this answer only.
func (e *Engine) EnrollHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uri, err := e.EnrollMFA(mux.Vars(r)["user"])
		if err != nil {
			api.WriteError(w, http.StatusInternalServerError, codeInternal, err.Error())
			return
		}
		api.WriteJSON(w, http.StatusOK, map[string]string{"user": mux.Vars(r)["user"], "otpauth": uri})
	})
}
