package reconcile

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"warden/audit"
	"warden/pki"
)

// CertificatesController is the name of the certificates controller.
const CertificatesController = "certificates"

// Certificates is the controller that keeps the server certificate fresh
// without a restart: it rotates it when its remaining lifetime falls under
// Settings certificate.rotateBeforeDays (a timer, not polling: Reconcile
// asks to be requeued at that moment), when the certificate settings
// change, and when certs/server.pem no longer holds what is served (the
// CLI pins that file). A custom certificate that nears its end is warned
// about (CERT_EXPIRING) once; when it has expired Rotate falls back to one
// issued by the local CA. Every rotation is audited as CERT_ROTATED. Its
// one key is "server".
type Certificates struct {
	m    *Manager
	cert *pki.ServerCert

	mu     sync.Mutex
	cfg    pki.ServerCertConfig
	warned string // serial of the custom certificate last warned about
}

var _ Reconciler = (*Certificates)(nil)

// AddCertificates adds the certificates controller for the server
// certificate holder sc (call before Run). The agent may Rotate sc itself
// before serving; if it has not, the controller's first reconcile does.
func (m *Manager) AddCertificates(sc *pki.ServerCert) (*Controller, error) {
	c := &Certificates{m: m, cert: sc}
	return m.Add(CertificatesController, c, ControllerOptions{OnPath: func(rel string) (string, bool) {
		if rel == "certs/"+pki.ServerCertFile || rel == "certs/"+pki.ServerKeyFile || rel == "certs" {
			return "server", true
		}
		return "", false
	}})
}

// Keys names the one key.
func (c *Certificates) Keys(context.Context) ([]string, error) { return []string{"server"}, nil }

// Reconcile rotates the server certificate if it must, and returns when it
// must look again.
func (c *Certificates) Reconcile(ctx context.Context, key string) (Result, error) {
	sp := c.m.store.Current().Settings()
	cfg := pki.ServerCertConfig{CertFile: c.abs(sp.Certificate.Path), KeyFile: c.abs(sp.Certificate.KeyPath)}
	c.mu.Lock()
	cfgChanged := cfg != c.cfg
	c.cfg = cfg
	c.mu.Unlock()
	if cfgChanged {
		c.cert.SetConfig(cfg)
	}

	cur := c.cert.Current()
	now := c.m.now()
	before := time.Duration(sp.Certificate.RotateBeforeDays) * 24 * time.Hour
	if before <= 0 {
		before = 10 * 24 * time.Hour
	}
	// A certificate that lives shorter than the window would be rotated in
	// a loop: rotate such one at half its life instead.
	if leaf := c.leaf(); leaf != nil && leaf.NotAfter.Sub(leaf.NotBefore)/2 < before {
		before = leaf.NotAfter.Sub(leaf.NotBefore) / 2
	}
	reason := ""
	switch {
	case cur.NotAfter.IsZero():
		reason = "no certificate yet"
	case cfgChanged && (cfg.CertFile != "" || cur.Custom):
		reason = "certificate settings changed"
	case cur.NotAfter.Sub(now) < before && !cur.Custom:
		reason = fmt.Sprintf("expires %s, within %s", cur.NotAfter.UTC().Format(time.RFC3339), before)
	case !now.Before(cur.NotAfter):
		reason = "custom certificate expired"
	default:
		if onDisk, err := c.servedOnDisk(); err != nil || onDisk != cur.Serial {
			actual := "serial " + onDisk
			if err != nil {
				actual = err.Error()
			}
			ReportDrift(ctx, Drift{Kind: "Certificate", ID: "server", Field: pki.ServerCertFile,
				Desired: "serial " + cur.Serial, Actual: actual, Action: "rotate",
				Target: &audit.TargetInfo{Kind: "Certificate", ID: "server", Path: c.abs("certs/" + pki.ServerCertFile)}})
			reason = "certs/" + pki.ServerCertFile + " does not hold the served certificate"
		}
	}
	if cur.Custom && reason == "" && cur.NotAfter.Sub(now) < before {
		c.warnExpiring(ctx, cur)
	}
	if reason != "" {
		if err := c.rotate(ctx, reason); err != nil {
			return Result{}, err
		}
		cur = c.cert.Current()
	}
	// Look again when the window opens (or, for a custom certificate, when
	// it expires); the resync timer covers clock jumps.
	next := cur.NotAfter.Add(-before)
	if cur.Custom {
		if now.Before(next) {
			return Result{RequeueAfter: next.Sub(now)}, nil
		}
		next = cur.NotAfter
	}
	return Result{RequeueAfter: max(next.Sub(now), time.Second)}, nil
}

func (c *Certificates) rotate(ctx context.Context, reason string) error {
	old := c.cert.Current()
	r, err := c.cert.Rotate()
	if err != nil {
		return fmt.Errorf("rotate server certificate: %w", err)
	}
	details := map[string]any{"reason": reason, "serial": r.Serial, "notAfter": r.NotAfter.UTC().Format(time.RFC3339),
		"custom": r.Custom, "previousSerial": old.Serial}
	if r.CustomErr != nil {
		details["customError"] = r.CustomErr.Error()
		c.m.log.Warn("custom server certificate not used", "err", r.CustomErr)
	}
	c.m.log.Info("server certificate rotated", "reason", reason, "serial", r.Serial, "notAfter", r.NotAfter)
	c.emit(ctx, audit.Event{Type: audit.CertRotated, Severity: audit.Info, Component: "reconcile",
		TargetInfo: &audit.TargetInfo{Kind: "Certificate", ID: "server"}, Details: details})
	return nil
}

func (c *Certificates) warnExpiring(ctx context.Context, cur pki.Rotation) {
	c.mu.Lock()
	if c.warned == cur.Serial {
		c.mu.Unlock()
		return
	}
	c.warned = cur.Serial
	c.mu.Unlock()
	c.m.log.Warn("custom server certificate expires soon", "serial", cur.Serial, "notAfter", cur.NotAfter)
	c.emit(ctx, audit.Event{Type: audit.CertExpiring, Severity: audit.Warning, Component: "reconcile",
		TargetInfo: &audit.TargetInfo{Kind: "Certificate", ID: "server", Path: c.cfg.CertFile},
		Details:    map[string]any{"serial": cur.Serial, "notAfter": cur.NotAfter.UTC().Format(time.RFC3339)}})
}

func (c *Certificates) emit(ctx context.Context, ev audit.Event) {
	if c.m.opts.Audit == nil {
		return
	}
	if _, err := c.m.opts.Audit.Write(ctx, ev); err != nil {
		c.m.log.Error("audit event not recorded", "type", ev.Type, "err", err)
	}
}

// leaf returns the served certificate, or nil.
func (c *Certificates) leaf() *x509.Certificate {
	tc, err := c.cert.GetCertificate(nil)
	if err != nil || tc == nil {
		return nil
	}
	return tc.Leaf
}

// servedOnDisk returns the serial of certs/server.pem.
func (c *Certificates) servedOnDisk() (string, error) {
	f, err := os.OpenFile(c.abs("certs/"+pki.ServerCertFile), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return "", errors.New("missing")
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", errors.New("not PEM")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", fmt.Errorf("not a certificate: %w", err)
	}
	return pki.SerialString(leaf.SerialNumber), nil
}

// abs resolves a path from Settings against the agent root.
func (c *Certificates) abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.m.root, filepath.FromSlash(p))
}
