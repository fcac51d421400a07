package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"warden/agent"
)

// client talks to the local agent found under --root, as admin.
type client struct {
	base string
	http *http.Client
}

// connErr marks errors reaching the agent (exit 3).
func connErr(err error) error { return &exitError{code: exitNoAgent, err: err} }

func newClient() (*client, error) {
	info, err := agent.ReadInfo(rootDir)
	if err != nil {
		return nil, connErr(err)
	}
	caPEM, err := os.ReadFile(info.CA)
	if err != nil {
		return nil, connErr(fmt.Errorf("read CA: %w", err))
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, connErr(fmt.Errorf("%s holds no certificate", info.CA))
	}
	certs := filepath.Join(rootDir, "certs")
	cert, err := tls.LoadX509KeyPair(filepath.Join(certs, "admin.pem"), filepath.Join(certs, "admin-key.pem"))
	if err != nil {
		return nil, connErr(fmt.Errorf("load the admin certificate (run as the agent's user): %w", err))
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert},
		MinVersion: tls.VersionTLS12, ServerName: "localhost"}}
	return &client{base: "https://" + info.API, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// callAgent is newClient then call, for commands that make one request.
func callAgent(method, path string, body []byte, out any) error {
	c, err := newClient()
	if err != nil {
		return err
	}
	return c.call(method, path, body, out)
}

// call sends a request and decodes a JSON answer into out (when not nil).
// API errors come back as errors carrying the agent's message.
func (c *client) call(method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return connErr(err)
	}
	req.Host = "localhost"
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return connErr(fmt.Errorf("reach the agent: %w", err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return connErr(err)
	}
	if resp.StatusCode >= 300 {
		var e struct{ Error, Code string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &apiErr{status: resp.StatusCode, code: e.Code, msg: e.Error}
		}
		return &apiErr{status: resp.StatusCode, msg: strings.TrimSpace(string(data))}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = data
		return nil
	}
	return json.Unmarshal(data, out)
}

type apiErr struct {
	status int
	code   string
	msg    string
}

func (e *apiErr) Error() string {
	return fmt.Sprintf("agent answered %d %s: %s", e.status, e.code, e.msg)
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// stream reads an NDJSON answer line by line until the agent ends it (or
// the process is interrupted).
func (c *client) stream(path string, line func([]byte)) error {
	req, err := http.NewRequest("GET", c.base+path, nil)
	if err != nil {
		return connErr(err)
	}
	req.Host = "localhost"
	hc := *c.http
	hc.Timeout = 0 // a stream has no deadline
	resp, err := hc.Do(req)
	if err != nil {
		return connErr(fmt.Errorf("reach the agent: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		return &apiErr{status: resp.StatusCode, msg: strings.TrimSpace(string(data))}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line(sc.Bytes())
	}
	return sc.Err()
}
