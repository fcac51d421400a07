// Package api is warden's local HTTPS API on loopback: mTLS identities,
// the role table, AllowedHosts, request limits, and small handlers over the
// store, the audit log and the policy engine.
package api

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden/audit"
	"warden/pki"
	"warden/source"
	"warden/state"
)

// Roles a caller's certificate can carry.
const (
	RoleAdmin  = "admin"
	RolePlugin = "plugin"
	// RoleMonitor reads /metrics (and /health, which needs no role).
	RoleMonitor = "monitor"
)

// perIdentityConcurrency caps the requests one identity has in flight.
const perIdentityConcurrency = 64

// Options wires a Server to the rest of the agent.
type Options struct {
	Store    *state.Store
	Audit    *audit.Writer
	CA       *pki.CA
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Status adds the runtime parts of GET /api/v1/status (controllers,
	// plugins); it may be nil.
	Status func() map[string]any
	// Settle, when set, is waited for (at most settleWait) before status
	// answers: a bundle that was just dropped in the inbox is applied first.
	Settle   func(context.Context)
	Evaluate http.Handler // POST /api/v1/evaluate, from the policy wiring; nil: 404
	// Pipeline applies PUT and DELETE /api/v1/desired the way bundles are
	// applied; nil: those answer 503.
	Pipeline *source.Pipeline
	// Peer finds the process behind a loopback connection, best effort,
	// for refusal audits; nil skips the lookup.
	Peer func(local, remote netip.AddrPort) (pid int, exe string, ok bool)
	// Extra routes registered by other parts of the agent (jobs, plugins,
	// grants, approvals), each with the roles allowed to call it.
	Extra []Route
	// Refusals coalesces refused callers' events (shared with the broker);
	// nil: the server makes its own.
	Refusals *audit.Coalescer
}

// Route is one API route and the roles allowed to call it.
type Route struct {
	Method  string
	Path    string
	Roles   []string
	Handler http.Handler
}

// Server serves the API. It is safe for concurrent use.
type Server struct {
	opts         Options
	log          *slog.Logger
	allowedHosts atomic.Pointer[hostSet]
	inflight     sync.Map // identity -> *atomic.Int32
	started      time.Time
	closing      chan struct{}
	closeOnce    sync.Once
}

// Close ends long-lived answers (audit streams) so that the HTTP server's
// graceful shutdown does not wait for them. Call it before Shutdown.
func (s *Server) Close() { s.closeOnce.Do(func() { close(s.closing) }) }

// New builds a Server. Its AllowedHosts start as localhost and 127.0.0.1
// until SetAllowedHosts is called.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Refusals == nil && opts.Audit != nil {
		opts.Refusals = audit.NewCoalescer(opts.Audit, 0, nil)
	}
	s := &Server{opts: opts, log: opts.Logger, started: time.Now(), closing: make(chan struct{})}
	s.SetAllowedHosts([]string{"localhost", "127.0.0.1"})
	return s
}

// SetAllowedHosts replaces the Host names the API answers to; it takes
// effect for the next request, without a restart. The entries read as in
// the reference pages (ASP.NET's AllowedHosts): "*" allows any host,
// "*.example.com" any subdomain of example.com, anything else one name.
func (s *Server) SetAllowedHosts(hosts []string) {
	s.allowedHosts.Store(newHostSet(hosts))
}

// checkHost answers 400 to a request whose Host header is not allowed,
// before any handler runs: a browser tricked by DNS rebinding sends the
// attacker's name.
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if !s.allowedHosts.Load().allows(host) {
			writeError(w, http.StatusBadRequest, codeBadHost, "Host header not in AllowedHosts")
			return
		}
		if r.Header.Get("Origin") != "" {
			// The API is for local programs, never for browser pages.
			writeError(w, http.StatusBadRequest, codeBadHost, "cross-origin requests are refused")
			return
		}
		next.ServeHTTP(w, r)
	})
}

type ctxKey struct{}

// IdentityOf returns the authenticated caller of r.
func IdentityOf(r *http.Request) (pki.Identity, bool) {
	id, ok := r.Context().Value(ctxKey{}).(pki.Identity)
	return id, ok
}

// guard authenticates the caller and checks the route's roles. Each
// refusal is audited with the peer's address and, best effort, its process.
func (s *Server) guard(roles []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			writeError(w, http.StatusUnauthorized, codeUnauthorized, "a client certificate is required")
			return
		}
		id, err := s.opts.CA.Identify(*r.TLS)
		if err != nil {
			s.refuse(r, audit.ProcessAuthenticationFailed, "", err.Error())
			writeError(w, http.StatusUnauthorized, codeUnauthorized, "client certificate refused: "+err.Error())
			return
		}
		if !hasRole(roles, id.Role) {
			s.refuse(r, audit.AuthorizationFailed, id.Role+"/"+id.Name, "role "+id.Role+" may not call "+r.Method+" "+r.URL.Path)
			writeError(w, http.StatusForbidden, codeForbidden, "role "+id.Role+" may not call this route")
			return
		}
		key := id.Role + "/" + id.Name
		v, _ := s.inflight.LoadOrStore(key, new(atomic.Int32))
		n := v.(*atomic.Int32)
		if n.Add(1) > perIdentityConcurrency {
			n.Add(-1)
			writeError(w, http.StatusTooManyRequests, codeBusy, "too many requests in flight for this identity")
			return
		}
		defer n.Add(-1)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, id)))
	})
}

func hasRole(roles []string, role string) bool {
	for _, r := range roles {
		if r == role {
			return true
		}
	}
	return false
}

// refuse audits a refused caller, capped and coalesced per peer address,
// identity and reason (audit.Coalescer): a flood of refusals is one event
// and a count per window. The process lookup is best effort, only for an
// event written now, and only ever adds detail: it never lets anyone in.
func (s *Server) refuse(r *http.Request, typ, identity, reason string) {
	local, _ := r.Context().Value(localAddrKey{}).(string)
	s.refusePeer(local, r.RemoteAddr, typ, identity, reason,
		&audit.TargetInfo{Path: r.Method + " " + r.URL.Path})
}

// RefuseHandshake audits a failed TLS handshake on the API listener (old
// TLS, plain HTTP, no common cipher suite), like any refused caller.
func (s *Server) RefuseHandshake(local, remote, reason string) {
	s.refusePeer(local, remote, audit.ProcessAuthenticationFailed, "", "TLS handshake failed: "+reason, nil)
}

func (s *Server) refusePeer(local, remote, typ, identity, reason string, target *audit.TargetInfo) {
	if s.opts.Refusals == nil {
		return
	}
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	e := audit.Event{Type: typ, Severity: audit.Warning, Component: "api",
		UserInfo:   &audit.UserInfo{Identity: identity, PeerAddr: remote},
		TargetInfo: target, Details: map[string]any{"reason": reason}}
	s.opts.Refusals.Record(typ+"|"+host+"|"+identity+"|"+audit.Cap(reason), e, func(e *audit.Event) {
		if s.opts.Peer == nil {
			return
		}
		la, err1 := netip.ParseAddrPort(local)
		ra, err2 := netip.ParseAddrPort(remote)
		if err1 == nil && err2 == nil {
			if pid, exe, ok := s.opts.Peer(la, ra); ok {
				e.UserInfo.PeerPID, e.UserInfo.PeerExe = pid, exe
			}
		}
	})
}

type localAddrKey struct{}

// ConnContext records each connection's local address so refusals can
// find the peer process (http.Server.ConnContext).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, localAddrKey{}, c.LocalAddr().String())
}
