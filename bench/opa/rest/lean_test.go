package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The lean client against Go's own HTTPS server: the bytes it builds are
// a request net/http accepts, it reads answers back to back on one
// connection, and it refuses what it cannot read.
func TestLeanClient(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/v1/x" || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request line or headers", http.StatusBadRequest)
			return
		}
		if strings.Contains(string(body), "chunked") {
			w.Write([]byte(`{"decision": "allow",`))
			w.(http.Flusher).Flush() // no Content-Length: chunked
			w.Write([]byte(`"policy": "p"}`))
			return
		}
		if strings.Contains(string(body), "teapot") {
			w.WriteHeader(http.StatusTeapot)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"result": map[string]string{"decision": "deny", "policy": string(body)}})
	}))
	defer srv.Close()
	cfg := srv.Client().Transport.(*http.Transport).TLSClientConfig
	c, err := dialLean(srv.URL+"/v1/x", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.c.Close()
	var buf []byte
	for i, body := range []string{"p-1", "a-much-longer-policy-name-than-the-first", "p-3"} {
		status, got, err := c.do(leanRequest(srv.URL+"/v1/x", []byte(body)), buf)
		if err != nil || status != 200 {
			t.Fatalf("request %d: status %d, err %v", i, status, err)
		}
		if !answerIs(got, "deny "+body, nil) {
			t.Errorf("request %d: answer %s, want deny %s", i, got, body)
		}
		buf = got
	}
	status, got, err := c.do(leanRequest(srv.URL+"/v1/x", []byte("teapot")), buf)
	if err != nil || status != http.StatusTeapot || !answerIs(got, "deny teapot", nil) {
		t.Errorf("teapot: status %d, body %s, err %v", status, got, err)
	}
	if _, _, err := c.do(leanRequest(srv.URL+"/v1/x", []byte("chunked")), buf); !errors.Is(err, errChunked) {
		t.Errorf("chunked answer: err %v, want errChunked", err)
	}
}

func TestAnswerIs(t *testing.T) {
	decode := func(b []byte) string {
		var a struct{ Decision, Policy string }
		if err := json.Unmarshal(b, &a); err != nil {
			return "undecodable"
		}
		return a.Decision + " " + a.Policy
	}
	tests := []struct {
		name, body, want string
		is               bool
	}{
		{"same", `{"decision":"allow","effective":"allow","policy":"p-1"}`, "allow p-1", true},
		{"spaces", `{"decision": "allow", "policy": "p-1"}`, "allow p-1", true},
		{"other decision", `{"decision":"deny","policy":"p-1"}`, "allow p-1", false},
		{"other policy", `{"decision":"allow","policy":"p-10"}`, "allow p-1", false},
		{"no policy", `{"decision":"deny","reason":"no policy matched"}`, "deny ", true},
		{"no policy, one wanted", `{"decision":"deny"}`, "deny p-1", false},
		{"key text inside a value", `{"reason":"\"decision\":\"allow\"","decision":"deny"}`, "deny ", true},
		{"escaped value decoded", `{"decision":"deny","policy":"p\"1"}`, `deny p"1`, true},
		{"null policy decoded", `{"decision":"deny","policy":null}`, "deny ", true},
		{"no decision", `{"error":"x"}`, "deny ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := answerIs([]byte(tt.body), tt.want, decode); got != tt.is {
				t.Errorf("answerIs(%s, %q) = %v, want %v", tt.body, tt.want, got, tt.is)
			}
		})
	}
}

// The floor server answers the lean client's request with its fixed body.
func TestFloorServer(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(dir, "floor")
	addr := "127.0.0.1:" + strconv.Itoa(freePort())
	go serveFloor(addr, certFile, keyFile)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	var c *leanConn
	var err error
	for range 100 {
		if c, err = dialLean("https://"+addr+"/", cfg); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.c.Close()
	for range 2 {
		status, body, err := c.do(leanRequest("https://"+addr+"/", []byte(`{"user": "u"}`)), nil)
		if err != nil || status != 200 || string(body) != floorAnswer {
			t.Fatalf("status %d, body %q, err %v; want 200 %s", status, body, err, floorAnswer)
		}
	}
}
