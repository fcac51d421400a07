package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"warden/audit"
)

// Error codes of the JSON error body {"error", "code"}.
const (
	codeBadHost      = "bad_host"
	codeUnauthorized = "unauthenticated"
	codeForbidden    = "forbidden"
	codeBadRequest   = "bad_request"
	codeBadJSON      = "bad_json"
	codeContentType  = "unsupported_media_type"
	codeTooLarge     = "too_large"
	codeNotFound     = "not_found"
	codeConflict     = "conflict"
	codeInvalid      = "invalid_document"
	codeBusy         = "too_many_requests"
	codeInternal     = "internal"
	// CodeAuditUnavailable: the action was not taken because its audit
	// event could not be stored (disk full, I/O error). Answered with 503.
	CodeAuditUnavailable = "audit_unavailable"
)

// WriteAuditUnavailable answers 503 audit_unavailable: the action that
// must be audited was refused because its event could not be stored.
func WriteAuditUnavailable(w http.ResponseWriter) {
	writeError(w, http.StatusServiceUnavailable, CodeAuditUnavailable,
		"audit unavailable: the event could not be stored (disk full or I/O error), so the action was not taken; see `warden status`")
}

// WriteFailure answers an agent failure err: 503 audit_unavailable when it
// wraps audit.ErrUnavailable, else 500 with err's text.
func WriteFailure(w http.ResponseWriter, err error) {
	if errors.Is(err, audit.ErrUnavailable) {
		WriteAuditUnavailable(w)
		return
	}
	writeError(w, http.StatusInternalServerError, codeInternal, err.Error())
}

// maxBody caps every request body.
const maxBody = 1 << 20

type apiError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// WriteJSON writes v as the JSON answer with status. Handlers outside this
// package (engine, jobs) use it so every answer has one shape.
func WriteJSON(w http.ResponseWriter, status int, v any) { writeJSON(w, status, v) }

// WriteError writes the JSON error body {"error", "code"} with status.
func WriteError(w http.ResponseWriter, status int, code, msg string) {
	writeError(w, status, code, msg)
}

// DecodeJSON reads a strict JSON body into v (content type, size cap, no
// unknown fields); on failure it has written the 4xx answer and returns
// false.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) bool { return decodeJSON(w, r, v) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, apiError{Error: msg, Code: code})
}

// decodeJSON reads a JSON body strictly: the right content type, at most
// maxBody bytes, one value, no unknown fields. It writes the 4xx answer
// itself and reports whether decoding succeeded.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, codeContentType, "Content-Type must be application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeBodyError(w, err)
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, codeBadJSON, "body holds more than one JSON value")
		return false
	}
	return true
}

// readBody reads a raw JSON body (for documents, validated by schema).
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, codeContentType, "Content-Type must be application/json")
		return nil, false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeBodyError(w, err)
		return nil, false
	}
	return data, true
}

func writeBodyError(w http.ResponseWriter, err error) {
	var tooBig *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("body larger than %d bytes", maxBody))
	case errors.As(err, &syn):
		writeError(w, http.StatusBadRequest, codeBadJSON, fmt.Sprintf("malformed JSON at byte %d", syn.Offset))
	case errors.As(err, &typ):
		writeError(w, http.StatusBadRequest, codeBadJSON, fmt.Sprintf("field %s: want %s, got %s", typ.Field, typ.Type, typ.Value))
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		writeError(w, http.StatusBadRequest, codeBadJSON, strings.TrimPrefix(err.Error(), "json: "))
	default:
		writeError(w, http.StatusBadRequest, codeBadJSON, "malformed JSON: "+err.Error())
	}
}
