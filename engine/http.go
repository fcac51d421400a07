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
		c, ok := httpCaller(w, r)
		if !ok {
			return
		}
		explain := r.URL.Query().Get("explain") == "true"
		if explain && c.Kind != CallerAdmin {
			api.WriteError(w, http.StatusForbidden, "forbidden", "explain is for admins only")
			return
		}
		res, err := e.Evaluate(r.Context(), c, req, explain)
		switch {
		case errors.Is(err, ErrRateLimited):
			w.Header().Set("Retry-After", "60")
			api.WriteError(w, http.StatusTooManyRequests, "rate_limited", err.Error())
		case errors.Is(err, ErrAuditUnavailable):
			api.WriteAuditUnavailable(w)
		case err != nil:
			api.WriteError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		default:
			writeResult(w, &res)
		}
	})
}

// writeResult writes a decision's answer as api.WriteJSON would, without
// reflection when it can (Result.appendJSON).
func writeResult(w http.ResponseWriter, r *Result) {
	var buf [512]byte
	b, ok := r.appendJSON(buf[:0])
	if !ok {
		api.WriteJSON(w, http.StatusOK, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(b)
}

// httpCaller is the caller the request's client certificate names; it
// answers 403 when there is none the engine knows.
func httpCaller(w http.ResponseWriter, r *http.Request) (Caller, bool) {
	id, ok := api.IdentityOf(r)
	if !ok {
		api.WriteError(w, http.StatusUnauthorized, "unauthorized", "no authenticated caller")
		return Caller{}, false
	}
	c, err := CallerFromIdentity(id)
	if err != nil {
		api.WriteError(w, http.StatusForbidden, "forbidden", err.Error())
		return Caller{}, false
	}
	return c, true
}

// DecideHandler serves POST /api/v1/approvals/{id}/approve and .../deny
// with body {"reason": "..."} (or none). The decision is recorded as the
// client certificate's identity: a body naming an approver is refused.
func (e *Engine) DecideHandler(approve bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := httpCaller(w, r)
		if !ok {
			return
		}
		var body struct {
			Reason   string `json:"reason"`
			Approver string `json:"approver"`
		}
		if r.ContentLength != 0 && !api.DecodeJSON(w, r, &body) {
			return
		}
		if body.Approver != "" {
			api.WriteError(w, http.StatusBadRequest, codeBadRequest,
				"approver: not accepted; the decision is recorded as the caller's certificate identity ("+c.Identity()+")")
			return
		}
		a, err := e.Decide(r.Context(), c, mux.Vars(r)["id"], approve, body.Reason)
		switch {
		case errors.Is(err, ErrNoApproval):
			api.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		case errors.Is(err, ErrNotAnApprover), errors.Is(err, ErrOwnRequest):
			api.WriteError(w, http.StatusForbidden, "forbidden", err.Error())
		case errors.Is(err, ErrAlreadyDecided):
			api.WriteError(w, http.StatusConflict, "conflict", err.Error())
		case errors.Is(err, ErrAuditUnavailable):
			api.WriteAuditUnavailable(w)
		case err != nil:
			api.WriteError(w, http.StatusInternalServerError, codeInternal, err.Error())
		default:
			api.WriteJSON(w, http.StatusOK, a)
		}
	})
}

// ApprovalsHandler serves GET /api/v1/approvals: what the caller may see
// (ApprovalsFor).
func (e *Engine) ApprovalsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := httpCaller(w, r)
		if !ok {
			return
		}
		as, err := e.ApprovalsFor(c)
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

// EnrollHandler serves POST /api/v1/mfa/{user}/enroll (body {"force":
// true} replaces an existing secret): the otpauth URI is in this answer
// only.
func (e *Engine) EnrollHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, ok := httpCaller(w, r)
		if !ok {
			return
		}
		var body struct {
			Force bool `json:"force"`
		}
		if !api.DecodeJSON(w, r, &body) {
			return
		}
		user := mux.Vars(r)["user"]
		by := c.userInfo()
		by.PeerAddr = r.RemoteAddr
		uri, err := e.EnrollMFA(r.Context(), user, EnrollOptions{Force: body.Force, By: by})
		switch {
		case errors.Is(err, ErrBadUserName):
			api.WriteError(w, http.StatusBadRequest, codeBadRequest, err.Error())
		case errors.Is(err, ErrEnrolled):
			api.WriteError(w, http.StatusConflict, "conflict", err.Error())
		case errors.Is(err, ErrAuditUnavailable):
			api.WriteAuditUnavailable(w)
		case err != nil:
			api.WriteError(w, http.StatusInternalServerError, codeInternal, err.Error())
		default:
			api.WriteJSON(w, http.StatusOK, map[string]string{"user": user, "otpauth": uri})
		}
	})
}
