package api

import (
	"net/http"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	anyRole   = []string{RoleAdmin, RolePlugin}
	adminOnly = []string{RoleAdmin}
)

// Handler is the HTTPS API: the one route table (DESIGN.md, HTTP API),
// behind the Host check and, for every route but /health, mTLS
// authentication and the route's roles.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, codeNotFound, "no such route")
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, codeBadRequest, "method not allowed")
	})
	r.Handle("/health", http.HandlerFunc(s.health)).Methods(http.MethodGet, http.MethodHead)

	routes := []Route{
		{http.MethodGet, "/api/v1/status", anyRole, http.HandlerFunc(s.status)},
		{http.MethodGet, "/api/v1/drift", anyRole, http.HandlerFunc(s.drift)},
		{http.MethodGet, "/api/v1/desired", adminOnly, http.HandlerFunc(s.desiredList)},
		{http.MethodGet, "/api/v1/desired/{kind}", adminOnly, http.HandlerFunc(s.desiredList)},
		{http.MethodGet, "/api/v1/desired/{kind}/{id}", adminOnly, http.HandlerFunc(s.desiredGet)},
		{http.MethodPut, "/api/v1/desired/{kind}/{id}", adminOnly, http.HandlerFunc(s.desiredPut)},
		{http.MethodDelete, "/api/v1/desired/{kind}/{id}", adminOnly, http.HandlerFunc(s.desiredDelete)},
		{http.MethodGet, "/api/v1/audit", adminOnly, http.HandlerFunc(s.auditList)},
		{http.MethodGet, "/api/v1/audit/verify", adminOnly, http.HandlerFunc(s.auditVerify)},
		{http.MethodGet, "/metrics", []string{RoleAdmin, RoleMonitor}, s.metrics()},
	}
	if s.opts.Evaluate != nil {
		routes = append(routes, Route{http.MethodPost, "/api/v1/evaluate", anyRole, s.opts.Evaluate})
	}
	routes = append(routes, s.opts.Extra...)
	for _, rt := range routes {
		r.Handle(rt.Path, s.guard(rt.Roles, rt.Handler)).Methods(rt.Method)
	}
	return s.checkHost(r)
}

// HealthHandler is the plain-HTTP listener: /health, and a redirect to the
// HTTPS API for everything else.
func (s *Server) HealthHandler(apiAddr string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://"+apiAddr+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
	return s.checkHost(mux)
}

func (s *Server) metrics() http.Handler {
	if s.opts.Registry == nil {
		return promhttp.Handler()
	}
	return promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{})
}
