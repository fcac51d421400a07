package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"

	"warden/schema"
)

// Listen holds the addresses the agent listens on ("127.0.0.1:6889").
// They are rendered into appsettings.json; every one must be loopback.
type Listen struct {
	API    string `json:"api,omitempty"`
	Health string `json:"health,omitempty"`
	MQTT   string `json:"mqtt,omitempty"`
}

// Validate refuses any address that is not a loopback host and port.
// Empty addresses are allowed (not configured).
func (l Listen) Validate() error {
	for _, a := range []struct{ name, addr string }{{"api", l.API}, {"health", l.Health}, {"mqtt", l.MQTT}} {
		if a.addr == "" {
			continue
		}
		if err := CheckLoopback(a.addr); err != nil {
			return fmt.Errorf("listen %s: %w", a.name, err)
		}
	}
	return nil
}

// CheckLoopback returns ErrNotLoopback unless addr is host:port with host
// "localhost" or a loopback IP. An empty host (all interfaces) is refused.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrNotLoopback, addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrNotLoopback, addr)
}

// SlogLevel maps a Settings logging.level to a slog level. Trace is Debug
// minus 4; an unknown level is Info.
func SlogLevel(level string) slog.Level {
	switch level {
	case "Trace":
		return slog.LevelDebug - 4
	case "Debug":
		return slog.LevelDebug
	case "Warning":
		return slog.LevelWarn
	case "Error":
		return slog.LevelError
	case "Critical":
		return slog.LevelError + 4
	}
	return slog.LevelInfo
}

// settingsHooks is the settings controller: it makes a new Settings
// document take effect in the running agent (AllowedHosts in the API, the
// log level) without a restart, by calling the observers registered with
// Manager.OnSettings. Its one key is "agent".
type settingsHooks struct {
	m *Manager

	// notify serializes observer calls, so an observer registered while
	// settings change never sees the older settings last.
	notify sync.Mutex

	mu        sync.Mutex
	applied   *schema.SettingsSpec
	last      []byte
	listen    Listen
	observers []func(*schema.SettingsSpec)
}

var _ Reconciler = (*settingsHooks)(nil)

func newSettingsHooks(m *Manager, l Listen) *settingsHooks {
	return &settingsHooks{m: m, listen: l}
}

// Keys names the one key.
func (s *settingsHooks) Keys(context.Context) ([]string, error) { return []string{"agent"}, nil }

// Reconcile compares the applied settings with the store's and, when they
// differ, tells every observer.
func (s *settingsHooks) Reconcile(ctx context.Context, key string) (Result, error) {
	sp := s.m.store.Current().Settings()
	b, err := json.Marshal(sp)
	if err != nil {
		return Result{}, TerminalError(fmt.Errorf("settings: %w", err))
	}
	s.notify.Lock()
	defer s.notify.Unlock()
	s.mu.Lock()
	if bytes.Equal(b, s.last) {
		s.mu.Unlock()
		return Result{}, nil
	}
	first := s.last == nil
	s.last, s.applied = b, sp
	obs := slices.Clone(s.observers)
	s.mu.Unlock()

	if lv := s.m.opts.LogLevel; lv != nil {
		lv.Set(SlogLevel(sp.Logging.Level))
	}
	for _, fn := range obs {
		fn(sp)
	}
	if !first {
		s.m.log.Info("settings in effect", "allowedHosts", strings.Join(sp.AllowedHosts, ";"), "logLevel", sp.Logging.Level)
	}
	return Result{}, nil
}

func (s *settingsHooks) current() *schema.SettingsSpec {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.applied != nil {
		return s.applied
	}
	return s.m.store.Current().Settings()
}

func (s *settingsHooks) observe(fn func(*schema.SettingsSpec)) {
	s.notify.Lock()
	defer s.notify.Unlock()
	s.mu.Lock()
	s.observers = append(s.observers, fn)
	sp := s.applied
	s.mu.Unlock()
	if sp != nil {
		fn(sp)
	}
}

func (s *settingsHooks) setListen(l Listen) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listen = l
}

func (s *settingsHooks) getListen() Listen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listen
}
