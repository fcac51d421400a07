package agent

import (
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"warden/audit"
	"warden/pki"
)

type tlsConfig = tls.Config

// startPKI opens the local CA, issues this start's server certificate (a
// new one at every start) and a fresh admin certificate for the CLI.
func (a *agent) startPKI() error {
	ca, err := pki.Open(filepath.Join(a.opts.Root, "certs"), time.Now)
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	a.ca = ca
	cert := a.store.Current().Settings().Certificate
	a.server = pki.NewServerCert(ca, pki.ServerCertConfig{CertFile: cert.Path, KeyFile: cert.KeyPath})
	rot, err := a.server.Rotate()
	if err != nil {
		return fmt.Errorf("server certificate: %w", err)
	}
	if rot.CustomErr != nil {
		a.log.Warn("custom server certificate not used", "err", rot.CustomErr)
	}
	a.audit.Emit(audit.Event{Type: audit.CertRotated, Component: "agent",
		TargetInfo: &audit.TargetInfo{Kind: "certificate", ID: "server"},
		Details:    map[string]any{"serial": rot.Serial, "notAfter": rot.NotAfter, "custom": rot.Custom, "reason": "start"}})
	if _, _, err := ca.WriteAdmin(); err != nil {
		return fmt.Errorf("admin certificate: %w", err)
	}
	if _, _, err := ca.WriteMonitor(); err != nil {
		return fmt.Errorf("monitor certificate: %w", err)
	}
	return nil
}

func (a *agent) serverTLS() *tls.Config { return pki.ServerTLSConfig(a.ca, a.server) }

func tlsListener(ln net.Listener, c *tls.Config) net.Listener { return tls.NewListener(ln, c) }
