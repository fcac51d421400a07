package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gorilla/mux"

	"warden/api"
	"warden/audit"
	"warden/reconcile"
)

// startPlugins adds the plugin supervisor to the controller manager m
// (before m runs: it first ends plugin processes an earlier run left
// behind), feeds it the broker's heartbeats and runs it until ctx ends,
// when it stops every plugin. Call it from startControllers, after the
// broker has started and before m.Run.
func (a *agent) startPlugins(ctx context.Context, m *reconcile.Manager, l reconcile.Listen) error {
	p, err := m.AddPlugins(reconcile.PluginOptions{CA: a.ca, Broker: a.broker, MQTTAddr: l.MQTT, APIAddr: l.API,
		Cgroups: a.cgroups})
	if err != nil {
		return err
	}
	if err := a.broker.OnHeartbeat(p.Heartbeat); err != nil {
		return err
	}
	a.goRun(ctx, "plugins", p.Run)
	return nil
}

// plugins is the running supervisor, or nil before startControllers.
func (a *agent) plugins() *reconcile.Plugins {
	if a.manager == nil {
		return nil
	}
	return reconcile.PluginsOf(a.manager)
}

// pluginStatus is the "plugins" list of GET /api/v1/status.
func (a *agent) pluginStatus() []reconcile.PluginStatus {
	if p := a.plugins(); p != nil {
		return p.List()
	}
	return []reconcile.PluginStatus{}
}

// pluginRoutes are GET /api/v1/plugins (admin, plugin) and POST
// /api/v1/plugins/{id}/restart (admin). They may be built before the
// supervisor exists: they look it up at each request.
func (a *agent) pluginRoutes() []api.Route {
	return []api.Route{
		{Method: http.MethodGet, Path: "/api/v1/plugins", Roles: []string{api.RoleAdmin, api.RolePlugin},
			Handler: http.HandlerFunc(a.listPlugins)},
		{Method: http.MethodPost, Path: "/api/v1/plugins/{id}/restart", Roles: []string{api.RoleAdmin},
			Handler: http.HandlerFunc(a.restartPlugin)},
	}
}

func (a *agent) listPlugins(w http.ResponseWriter, _ *http.Request) {
	api.WriteJSON(w, http.StatusOK, map[string]any{"plugins": a.pluginStatus()})
}

// restartPlugin stops the plugin (if it runs) and starts it again with a
// clean restart history, audited as ADMIN_ACTION first (503
// audit_unavailable when the event cannot be stored; a known plugin's
// restart refused afterwards, 409, stays audited as asked); it answers 202 at once
// with the plugin's status (PLUGIN_EXITED and PLUGIN_RESTARTED follow).
func (a *agent) restartPlugin(w http.ResponseWriter, r *http.Request) {
	p := a.plugins()
	if p == nil {
		api.WriteError(w, http.StatusServiceUnavailable, "unavailable", "plugin supervisor not running")
		return
	}
	id := mux.Vars(r)["id"]
	caller, _ := api.IdentityOf(r)
	who := caller.Role + "/" + caller.Name
	known := false
	for _, s := range p.List() {
		known = known || s.ID == id
	}
	if !known {
		api.WriteError(w, http.StatusNotFound, "not_found", fmt.Sprintf("%v: %s", reconcile.ErrPluginUnknown, id))
		return
	}
	// Audited before it happens: no event stored, no restart.
	if err := a.audit.Record(audit.Event{Type: audit.AdminAction, Component: "api",
		UserInfo:   &audit.UserInfo{Identity: who, PeerAddr: r.RemoteAddr},
		TargetInfo: &audit.TargetInfo{Kind: "Plugin", ID: audit.Cap(id)},
		Details:    map[string]any{"action": "restart"}}); err != nil {
		api.WriteFailure(w, err)
		return
	}
	err := p.Restart(id, who)
	switch {
	case errors.Is(err, reconcile.ErrPluginUnknown):
		api.WriteError(w, http.StatusNotFound, "not_found", err.Error())
		return
	case errors.Is(err, reconcile.ErrPluginNoAutorun):
		api.WriteError(w, http.StatusConflict, "conflict", err.Error())
		return
	case err != nil:
		api.WriteError(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	var st any = map[string]string{"id": id}
	for _, s := range p.List() {
		if s.ID == id {
			st = s
		}
	}
	api.WriteJSON(w, http.StatusAccepted, st)
}
