package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeRequestRefuses(t *testing.T) {
	const app = `"application":{"path":"/usr/bin/nc"}`
	cases := []struct {
		name  string
		body  string
		field string
	}{
		{"empty body", ``, ""},
		{"not an object", `[]`, ""},
		{"syntax", `{"user":`, ""},
		{"trailing data", `{"user":"carol","action":"elevate",` + app + `} {}`, ""},
		{"unknown field", `{"user":"carol","action":"elevate",` + app + `,"colour":"red"}`, "colour"},
		{"unknown nested field", `{"user":"carol","action":"elevate","application":{"path":"/usr/bin/nc","size":1}}`, "size"},
		{"caller-only flag", `{"user":"carol","action":"elevate",` + app + `,"mfaVerified":true}`, "mfaVerified"},
		{"wrong type", `{"user":"carol","groups":"staff","action":"elevate",` + app + `}`, "groups"},
		{"wrong nested type", `{"user":"carol","action":"elevate","application":{"path":7}}`, "application.path"},
		{"bad time", `{"user":"carol","action":"elevate",` + app + `,"time":"yesterday"}`, "time"},
		{"no user", `{"action":"elevate",` + app + `}`, "user"},
		{"user with slash", `{"user":"../root","action":"elevate",` + app + `}`, "user"},
		{"user with control", `{"user":"ca\u0000rol","action":"elevate",` + app + `}`, "user"},
		{"no action", `{"user":"carol",` + app + `}`, "action"},
		{"unknown action", `{"user":"carol","action":"delete",` + app + `}`, "action"},
		{"elevate without path", `{"user":"carol","action":"elevate"}`, "application.path"},
		{"file access without target", `{"user":"carol","action":"file-access",` + app + `}`, "target.path"},
		{"relative path", `{"user":"carol","action":"elevate","application":{"path":"bin/nc"}}`, "application.path"},
		{"unclean path", `{"user":"carol","action":"elevate","application":{"path":"/usr/bin/../bin/nc"}}`, "application.path"},
		{"traversing target", `{"user":"carol","action":"file-access","target":{"path":"/home/carol/../../etc/shadow"}}`, "target.path"},
		{"trailing slash", `{"user":"carol","action":"file-access","target":{"path":"/etc/"}}`, "target.path"},
		{"bad parent", `{"user":"carol","action":"elevate","application":{"path":"/usr/bin/nc","parent":"sh"}}`, "application.parent"},
		{"bad sha256", `{"user":"carol","action":"elevate","application":{"path":"/usr/bin/nc","sha256":"xyz"}}`, "application.sha256"},
		{"bad group", `{"user":"carol","groups":[""],"action":"elevate",` + app + `}`, "groups[0]"},
		{"negative requestedSeconds", `{"user":"carol","action":"elevate",` + app + `,"requestedSeconds":-1}`, "requestedSeconds"},
		{"requestedSeconds over a day", `{"user":"carol","action":"elevate",` + app + `,"requestedSeconds":86401}`, "requestedSeconds"},
		{"long justification", `{"user":"carol","action":"elevate",` + app + `,"justification":"` + strings.Repeat("j", 3000) + `"}`, "justification"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeRequest(strings.NewReader(tc.body))
			var re *RequestError
			if !errors.As(err, &re) {
				t.Fatalf("got %v, want a RequestError", err)
			}
			if re.Field != tc.field {
				t.Errorf("field %q (%v), want %q", re.Field, err, tc.field)
			}
		})
	}
}

func TestDecodeRequestTooLarge(t *testing.T) {
	body := `{"user":"carol","action":"elevate","application":{"path":"/usr/bin/nc","commandLine":"` + strings.Repeat("x", MaxRequestSize) + `"}}`
	if _, err := DecodeRequest(strings.NewReader(body)); !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("got %v, want ErrRequestTooLarge", err)
	}
}

func TestDecodeRequestAccepts(t *testing.T) {
	body := `{"user":"dave","groups":["developers"],"machine":"ws-17","sessionId":"s-2","action":"elevate",
	  "application":{"path":"/usr/bin/apt-get","sha256":"ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789",
	  "commandLine":"apt-get install jq","publisher":"Debian","parent":"/usr/bin/bash"},
	  "time":"2025-06-02T10:00:00Z","justification":"INC-42","mfaCode":"123456"}`
	req, err := DecodeRequest(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if req.Application.SHA256 != "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789" {
		t.Errorf("sha256 not lower-cased: %s", req.Application.SHA256)
	}
	if req.Time == nil || !req.Time.Equal(monday10) || req.Justification != "INC-42" || req.MFACode != "123456" {
		t.Errorf("got %+v", req)
	}
	if req.MFAVerified || req.Approved {
		t.Error("flags set from JSON")
	}
}

func TestSourceKey(t *testing.T) {
	cases := []struct {
		req  Request
		want string
	}{
		{Request{User: "carol", Machine: "ws-17", SessionID: "s-1"}, "s:s-1"},
		{Request{User: "carol", Machine: "ws-17"}, "u:carol\x00ws-17"},
		// a session id cannot pose as a user and machine
		{Request{User: "x", SessionID: "u:carol\x00ws-17"}, "s:u:carol\x00ws-17"},
	}
	for _, tc := range cases {
		if got := tc.req.SourceKey(); got != tc.want {
			t.Errorf("SourceKey(%+v) = %q, want %q", tc.req, got, tc.want)
		}
	}
}
