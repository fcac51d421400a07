package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"warden/audit"
	"warden/schema"
	"warden/source"
	"warden/state"
)

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// settleWait bounds how long status waits for an inbox bundle in flight.
const settleWait = 2 * time.Second

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	if s.opts.Settle != nil {
		ctx, cancel := context.WithTimeout(r.Context(), settleWait)
		s.opts.Settle(ctx)
		cancel()
	}
	sn := s.opts.Store.Current()
	out := map[string]any{
		"generation":    sn.Meta.Generation,
		"bundleVersion": sn.Meta.BundleVersion,
		"source":        sn.Meta.Source,
		"documents":     sn.Meta.Documents,
		"uptimeSeconds": int(time.Since(s.started).Seconds()),
		"controllers":   []any{},
		"plugins":       []any{},
	}
	if !sn.Meta.AppliedAt.IsZero() {
		out["appliedAt"] = sn.Meta.AppliedAt
	}
	if s.opts.Audit != nil {
		out["audit"] = s.opts.Audit.Health()
	}
	if s.opts.Status != nil {
		for k, v := range s.opts.Status() {
			out[k] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) drift(w http.ResponseWriter, r *http.Request) {
	recs, err := s.opts.Store.DriftRecords()
	if err != nil {
		s.internal(w, err)
		return
	}
	if r.URL.Query().Get("open") == "true" {
		open := recs[:0]
		for _, rec := range recs {
			if rec.State != state.DriftCorrected {
				open = append(open, rec)
			}
		}
		recs = open
	}
	if recs == nil {
		recs = []state.DriftRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"drift": recs})
}

// kindOf accepts a kind as "Policy", "policy" or "policies".
func kindOf(s string) (string, bool) {
	l := strings.ToLower(s)
	for _, k := range schema.Kinds {
		kl := strings.ToLower(k)
		if l == kl || l == kl+"s" || (strings.HasSuffix(kl, "y") && l == kl[:len(kl)-1]+"ies") {
			return k, true
		}
	}
	return "", false
}

// kindParam reads the {kind} route variable, answering 404 for a kind
// that does not exist.
func kindParam(w http.ResponseWriter, vars map[string]string) (string, bool) {
	kind, ok := kindOf(vars["kind"])
	if !ok {
		writeError(w, http.StatusNotFound, codeNotFound, "unknown kind "+vars["kind"])
	}
	return kind, ok
}

func (s *Server) desiredList(w http.ResponseWriter, r *http.Request) {
	sn := s.opts.Store.Current()
	docs := sn.Docs
	if _, ok := mux.Vars(r)["kind"]; ok {
		kind, known := kindParam(w, mux.Vars(r))
		if !known {
			return
		}
		docs = sn.OfKind(kind)
	}
	out := make([]any, 0, len(docs))
	for _, d := range docs {
		out = append(out, d.Raw)
	}
	writeJSON(w, http.StatusOK, map[string]any{"generation": sn.Meta.Generation, "documents": out})
}

func (s *Server) desiredGet(w http.ResponseWriter, r *http.Request) {
	v := mux.Vars(r)
	kind, ok := kindParam(w, v)
	if !ok {
		return
	}
	d := s.opts.Store.Current().Get(kind, v["id"])
	if d == nil {
		writeError(w, http.StatusNotFound, codeNotFound, kind+"/"+v["id"]+" is not in the desired state")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(d.Raw)
}

// desiredPut applies one document locally through the source pipeline
// (source.Pipeline.ApplyLocal): validated and compiled as a bundle's
// documents are, a new generation (same bundle version, source "local"),
// audited as ADMIN_ACTION (and CONFIG_CHANGED) in the same transaction.
func (s *Server) desiredPut(w http.ResponseWriter, r *http.Request) {
	v := mux.Vars(r)
	kind, ok := kindParam(w, v)
	if !ok {
		return
	}
	data, ok := readBody(w, r)
	if !ok {
		return
	}
	s.applyLocal(w, r, source.LocalChange{Kind: kind, ID: v["id"], Data: data})
}

func (s *Server) desiredDelete(w http.ResponseWriter, r *http.Request) {
	v := mux.Vars(r)
	kind, ok := kindParam(w, v)
	if !ok {
		return
	}
	s.applyLocal(w, r, source.LocalChange{Kind: kind, ID: v["id"]})
}

func (s *Server) applyLocal(w http.ResponseWriter, r *http.Request, c source.LocalChange) {
	if s.opts.Pipeline == nil {
		writeError(w, http.StatusServiceUnavailable, codeInternal, "local changes are not available")
		return
	}
	id, _ := IdentityOf(r)
	c.By = &audit.UserInfo{Identity: id.Role + "/" + id.Name, PeerAddr: r.RemoteAddr}
	meta, err := s.opts.Pipeline.ApplyLocal(r.Context(), c)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, meta)
	case errors.Is(err, state.ErrNotFound):
		writeError(w, http.StatusNotFound, codeNotFound, c.Kind+"/"+c.ID+" is not in the desired state")
	case errors.Is(err, source.ErrChanged):
		writeError(w, http.StatusConflict, codeConflict, err.Error())
	case source.Refused(err):
		writeError(w, http.StatusBadRequest, codeInvalid, err.Error())
	default:
		s.internal(w, err)
	}
}

// VerifyAnswer is GET /api/v1/audit/verify: how many events of the stored
// hash chain checked out, and where it breaks, if it does.
type VerifyAnswer struct {
	Events   int    `json:"events"`
	Intact   bool   `json:"intact"`
	BrokenAt uint64 `json:"brokenAt,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// auditVerify walks the stored audit chain, the check `warden audit
// verify` makes on the store itself when no agent holds it.
func (s *Server) auditVerify(w http.ResponseWriter, _ *http.Request) {
	n, err := audit.Verify(s.opts.Store)
	var brk *audit.BreakError
	switch {
	case err == nil:
		WriteJSON(w, http.StatusOK, VerifyAnswer{Events: n, Intact: true})
	case errors.As(err, &brk):
		WriteJSON(w, http.StatusOK, VerifyAnswer{Events: n, BrokenAt: brk.Seq, Reason: brk.Reason})
	default:
		writeError(w, http.StatusInternalServerError, codeInternal, "verify: "+err.Error())
	}
}

func (s *Server) auditList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := audit.Filter{User: q.Get("user")}
	if t := q.Get("type"); t != "" {
		f.Types = strings.Split(t, ",")
	}
	if v := q.Get("since"); v != "" {
		since, err := parseSince(v, time.Now())
		if err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest, "since: "+err.Error())
			return
		}
		f.Since = since
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, codeBadRequest, "limit: want a positive integer")
			return
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, codeBadRequest, "cursor: not a cursor this API gave out")
			return
		}
		f.After = n
	}
	if q.Get("follow") == "true" {
		s.auditFollow(w, r, f)
		return
	}
	events, next, err := audit.Query(s.opts.Store, f)
	if err != nil {
		s.internal(w, err)
		return
	}
	raw := make([]any, len(events))
	for i, e := range events {
		raw[i] = e.Raw
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": raw, "next": next})
}

// parseSince accepts RFC 3339 or a duration back from now ("1h", "15m").
func parseSince(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("want RFC 3339 or a duration such as 1h, got %q", v)
	}
	return now.Add(-d), nil
}

// internal answers a failure of the agent: 503 audit_unavailable when the
// action was refused because its audit event could not be stored, 500
// otherwise.
func (s *Server) internal(w http.ResponseWriter, err error) {
	s.log.Error("api: request failed", "err", err)
	if errors.Is(err, audit.ErrUnavailable) {
		WriteAuditUnavailable(w)
		return
	}
	writeError(w, http.StatusInternalServerError, codeInternal, "internal error; see the agent log")
}
