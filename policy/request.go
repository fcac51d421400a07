package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// Actions a Request can ask for.
const (
	ActionElevate    = "elevate"
	ActionFileAccess = "file-access"
	ActionCommand    = "command"
	// ActionExec is a program about to run (ApplicationControl policies);
	// the exec controller asks it for every exec it watches.
	ActionExec = "exec"
)

// Request limits. A request is small; anything larger is refused before it
// is parsed, so a caller cannot make the engine buffer megabytes.
const (
	MaxRequestSize       = 64 << 10
	maxNameLen           = 256  // user, machine, group, session id
	maxPathLen           = 4096 // PATH_MAX
	maxCommandLineLen    = 32 << 10
	maxJustificationLen  = 2048
	maxGroups            = 256
	maxFieldLenPublisher = 1024
)

// Grant durations: a request may ask for at most MaxGrantSeconds; a file
// access request under a policy without durationSeconds that asks for
// nothing gets DefaultAccessSeconds.
const (
	MaxGrantSeconds      = 86400
	DefaultAccessSeconds = 3600
)

// ErrRequestTooLarge is returned by DecodeRequest for a body above
// MaxRequestSize.
var ErrRequestTooLarge = fmt.Errorf("request larger than %d bytes", MaxRequestSize)

// Request is one question to the engine: may this user, on this machine, do
// this action with this application (and target)? Its JSON shape is the body
// of POST /api/v1/evaluate.
type Request struct {
	User        string      `json:"user"`
	Groups      []string    `json:"groups,omitempty"`
	Machine     string      `json:"machine,omitempty"`
	SessionID   string      `json:"sessionId,omitempty"`
	Action      string      `json:"action"`
	Application Application `json:"application"`
	Target      *Target     `json:"target,omitempty"`
	// Time is when the request happened, as the caller saw it. It is
	// informational: Evaluate judges time windows at the `now` it is given,
	// and the caller decides whether to pass Time there (an admin's what-if).
	Time          *time.Time `json:"time,omitempty"`
	Justification string     `json:"justification,omitempty"`
	MFACode       string     `json:"mfaCode,omitempty"`
	// RequestedSeconds is how long the caller asks a grant to last
	// (`warden access --for`); 0 asks for the default. A grant lasts the
	// shorter of this and the policy's durationSeconds.
	RequestedSeconds int `json:"requestedSeconds,omitempty"`

	// MFAVerified and Approved are set by the caller after it checked an
	// MFA code or found a usable approval; they are never read from JSON,
	// so a client cannot claim them.
	MFAVerified bool `json:"-"`
	Approved    bool `json:"-"`
}

// Application is the program a request is about.
type Application struct {
	Path        string `json:"path,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	CommandLine string `json:"commandLine,omitempty"`
	Publisher   string `json:"publisher,omitempty"`
	Parent      string `json:"parent,omitempty"`
}

// Target is the file a file-access request is about.
type Target struct {
	Path string `json:"path"`
	// Write asks for write access (`warden access --write`); without it
	// the request is for read access.
	Write bool `json:"write,omitempty"`
}

// RequestError is a request that cannot be evaluated: Field names the JSON
// field ("application.path", or "" for the whole body).
type RequestError struct {
	Field string
	Msg   string
}

func (e *RequestError) Error() string {
	if e.Field == "" {
		return "request: " + e.Msg
	}
	return "request: " + e.Field + ": " + e.Msg
}

func reqErr(field, format string, args ...any) error {
	return &RequestError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// DecodeRequest reads one JSON request of at most MaxRequestSize bytes and
// validates it. Unknown fields, wrong types, trailing data, missing required
// fields and unclean paths are errors of type *RequestError naming the
// field (ErrRequestTooLarge for an oversized body). The sha256 is
// lower-cased.
func DecodeRequest(r io.Reader) (*Request, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxRequestSize+1))
	if err != nil {
		return nil, fmt.Errorf("request: read: %w", err)
	}
	if len(data) > MaxRequestSize {
		return nil, ErrRequestTooLarge
	}
	req, ok := decodeFast(data)
	if !ok {
		if req, err = decodeJSON(data); err != nil {
			return nil, err
		}
	}
	if err := req.Validate(); err != nil {
		return nil, err
	}
	return req, nil
}

// decodeJSON decodes a request with encoding/json, strictly (no unknown
// field, nothing after the object), its errors naming the field.
func decodeJSON(data []byte) (*Request, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var req Request
	if err := dec.Decode(&req); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, reqErr("", "unexpected data after the JSON object")
	}
	return &req, nil
}

// jsonError turns encoding/json's errors into RequestErrors naming the field.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		return reqErr(te.Field, "must be %s, not %s", jsonType(te.Type.Kind().String()), te.Value)
	case errors.As(err, &se):
		return reqErr("", "not valid JSON at byte %d: %v", se.Offset, se)
	case errors.Is(err, io.EOF):
		return reqErr("", "empty body")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return reqErr("", "truncated JSON")
	}
	msg := err.Error()
	if f, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		return reqErr(strings.Trim(f, `"`), "unknown field")
	}
	var pe *time.ParseError
	if errors.As(err, &pe) {
		return reqErr("time", "must be an RFC 3339 time: %v", pe)
	}
	return reqErr("", "%s", strings.TrimPrefix(msg, "json: "))
}

func jsonType(kind string) string {
	switch kind {
	case "slice":
		return "an array"
	case "struct", "ptr":
		return "an object"
	case "bool":
		return "a boolean"
	case "string":
		return "a string"
	}
	return kind
}

// Validate checks a request built in Go (DecodeRequest calls it): required
// fields, lengths, a known action, absolute clean paths, a 64-hex sha256.
// It lower-cases SHA256.
func (r *Request) Validate() error {
	if err := checkName("user", r.User, true); err != nil {
		return err
	}
	if strings.ContainsRune(r.User, '/') || r.User == "." || r.User == ".." {
		// ${HOME} is built from the user name: it must not climb.
		return reqErr("user", "must not contain / or be . or ..")
	}
	if err := checkName("machine", r.Machine, false); err != nil {
		return err
	}
	if err := checkName("sessionId", r.SessionID, false); err != nil {
		return err
	}
	if len(r.Groups) > maxGroups {
		return reqErr("groups", "more than %d groups", maxGroups)
	}
	for i, g := range r.Groups {
		if err := checkName(fmt.Sprintf("groups[%d]", i), g, true); err != nil {
			return err
		}
	}
	switch r.Action {
	case ActionElevate, ActionCommand, ActionExec:
		if r.Application.Path == "" {
			return reqErr("application.path", "required for action %s", r.Action)
		}
	case ActionFileAccess:
		if r.Target == nil || r.Target.Path == "" {
			return reqErr("target.path", "required for action file-access")
		}
	case "":
		return reqErr("action", "required field is missing")
	default:
		return reqErr("action", "invalid value %q (must be one of elevate, file-access, command, exec)", r.Action)
	}
	if err := r.Application.validate(); err != nil {
		return err
	}
	if r.Target != nil {
		if err := checkPath("target.path", r.Target.Path, true); err != nil {
			return err
		}
	}
	if len(r.Justification) > maxJustificationLen {
		return reqErr("justification", "longer than %d bytes", maxJustificationLen)
	}
	if r.RequestedSeconds < 0 || r.RequestedSeconds > MaxGrantSeconds {
		return reqErr("requestedSeconds", "invalid value %d (must be between 0 and %d)", r.RequestedSeconds, MaxGrantSeconds)
	}
	if len(r.MFACode) > 16 {
		return reqErr("mfaCode", "longer than 16 bytes")
	}
	return nil
}

func (a *Application) validate() error {
	if err := checkPath("application.path", a.Path, false); err != nil {
		return err
	}
	if err := checkPath("application.parent", a.Parent, false); err != nil {
		return err
	}
	if a.SHA256 != "" {
		if len(a.SHA256) != 64 || strings.Trim(strings.ToLower(a.SHA256), "0123456789abcdef") != "" {
			return reqErr("application.sha256", "must be 64 hex digits")
		}
		a.SHA256 = strings.ToLower(a.SHA256)
	}
	if len(a.CommandLine) > maxCommandLineLen {
		return reqErr("application.commandLine", "longer than %d bytes", maxCommandLineLen)
	}
	if strings.IndexByte(a.CommandLine, 0) >= 0 {
		return reqErr("application.commandLine", "must not contain NUL")
	}
	if len(a.Publisher) > maxFieldLenPublisher {
		return reqErr("application.publisher", "longer than %d bytes", maxFieldLenPublisher)
	}
	return nil
}

func checkName(field, v string, required bool) error {
	switch {
	case v == "" && required:
		return reqErr(field, "required field is missing")
	case len(v) > maxNameLen:
		return reqErr(field, "longer than %d bytes", maxNameLen)
	case strings.IndexFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0:
		return reqErr(field, "must not contain control characters")
	}
	return nil
}

// checkPath insists on absolute, clean paths: a policy on /home/carol/**
// must not be fooled by /home/carol/../../etc/shadow.
func checkPath(field, p string, required bool) error {
	switch {
	case p == "":
		if required {
			return reqErr(field, "required field is missing")
		}
		return nil
	case len(p) > maxPathLen:
		return reqErr(field, "longer than %d bytes", maxPathLen)
	case p[0] != '/':
		return reqErr(field, "must be an absolute path")
	case strings.IndexByte(p, 0) >= 0:
		return reqErr(field, "must not contain NUL")
	case path.Clean(p) != p:
		return reqErr(field, "must be a clean path (no //, . or .. elements, no trailing /): %q", p)
	}
	return nil
}

// SourceKey is the key the rate limiter and circuit breaker count a request
// under: its session id, else its user and machine.
func (r *Request) SourceKey() string {
	if r.SessionID != "" {
		return "s:" + r.SessionID
	}
	return "u:" + r.User + "\x00" + r.Machine
}
