package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"warden/audit"
	"warden/state"
)

// RegisterOptions says which backend to register with.
type RegisterOptions struct {
	URL     string // backend base URL, e.g. https://backend.example/v1
	Token   string // one-time or enrolment token issued by the backend
	CAFile  string // CA to verify the backend with, instead of the system roots
	Machine string // name sent to the backend (default os.Hostname)
	Force   bool   // replace an existing registration
}

// ErrRegistered is returned when the agent is registered already and
// Force is not set.
var ErrRegistered = errors.New("agent is already registered (use --force to register again)")

// Register registers the agent once: POST {url}/register with the token,
// then keeps the agent id and credential the backend issued in the
// encrypted store (state.Secrets) and audits AGENT_REGISTERED. The token
// and credential never reach a plain file, a log line or an audit event.
// It needs the store, so it runs while the agent is stopped (the store
// allows one process at a time).
func Register(ctx context.Context, store *state.Store, aw *audit.Writer, opts RegisterOptions) (*Registration, error) {
	base, err := backendURL(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.Token == "" {
		return nil, errors.New("register: a token is required")
	}
	if old, err := LoadRegistration(store); err == nil && !opts.Force {
		return nil, fmt.Errorf("%w: agent %s at %s", ErrRegistered, old.AgentID, old.URL)
	} else if err != nil && !errors.Is(err, ErrNotRegistered) {
		return nil, err
	}
	if opts.Machine == "" {
		opts.Machine, _ = os.Hostname()
	}
	client, err := newHTTPClient(opts.CAFile, nil, func() time.Duration { return time.Minute })
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(RegisterRequest{Token: opts.Token, Machine: opts.Machine})
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, base+"/register", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("register: %w", redact(err, opts.Token))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, fmt.Errorf("register: backend answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	var rr RegisterResponse
	if err := json.Unmarshal(data, &rr); err != nil || rr.AgentID == "" || rr.Credential == "" {
		return nil, fmt.Errorf("register: backend answer has no agent id or credential")
	}
	if rr.Group == "" {
		rr.Group = DefaultGroup
	}
	reg := &Registration{URL: base, CAFile: opts.CAFile, AgentID: rr.AgentID, Credential: rr.Credential,
		Group: rr.Group, RegisteredAt: time.Now().UTC()}
	if err := store.Put(state.Secrets, RegistrationKey, reg); err != nil {
		return nil, fmt.Errorf("register: keep credentials: %w", err)
	}
	if aw != nil {
		_, err = aw.Write(ctx, audit.Event{Type: audit.AgentRegistered, Severity: audit.Info, Component: "source",
			TargetInfo: &audit.TargetInfo{Kind: "Backend", ID: rr.AgentID, Path: base},
			Details:    map[string]any{"backend": base, "agentId": rr.AgentID, "group": rr.Group, "machine": opts.Machine}})
	}
	return reg, err
}

// ErrPlainHTTP refuses a plain http:// backend that is not on loopback:
// the registration token and the agent's credential would travel in the
// clear.
var ErrPlainHTTP = errors.New("credentials never travel in the clear: use https:// (plain http:// only to a loopback address)")

// backendURL checks a backend base URL and drops a trailing slash. Plain
// http:// is for a backend on this machine (tests, a local mirror):
// an IP literal on loopback or "localhost", which resolves from
// /etc/hosts that only root can change.
func backendURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("backend URL %q: want https://host[/path]", raw)
	}
	if u.User != nil {
		return "", fmt.Errorf("backend URL must not carry credentials")
	}
	if u.Scheme == "http" && !loopbackHost(u.Hostname()) {
		return "", fmt.Errorf("backend URL %q: %w", raw, ErrPlainHTTP)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

func loopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// redact keeps a secret out of an error message.
func redact(err error, secret string) error {
	if secret == "" || !strings.Contains(err.Error(), secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), secret, "REDACTED"))
}
