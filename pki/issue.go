package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"regexp"
	"time"

	"warden/atomicfile"
)

// Roles a client certificate can carry.
const (
	RoleAdmin  = "admin"
	RolePlugin = "plugin"
	// RoleMonitor may read /metrics and /health and nothing else: the
	// identity a Prometheus scrape uses.
	RoleMonitor = "monitor"
)

const (
	// AdminName is the name in the operator CLI's certificate (warden://admin/cli).
	AdminName = "cli"
	// AdminTTL is the lifetime of certs/admin.pem. The agent writes a new one
	// at every start, so a short lifetime costs nothing and bounds how long a
	// copied admin key is worth anything.
	AdminTTL = 7 * 24 * time.Hour
	// MaxClientTTL is the longest lifetime Issue grants. It also bounds how
	// long a revocation of a serial this process did not issue is kept.
	MaxClientTTL = 365 * 24 * time.Hour
	// MonitorName is the name in the monitor certificate (warden://monitor/prometheus).
	MonitorName = "prometheus"
	// MonitorTTL is the lifetime of certs/monitor.pem: longer than the
	// admin's, since scrapers copy it and it only reads metrics; it is
	// written anew, at the same path, at every start.
	MonitorTTL = 90 * 24 * time.Hour
)

// URIScheme is the scheme of the identity URI SAN: warden://ROLE/NAME.
const URIScheme = "warden"

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func validRole(role string) bool {
	return role == RoleAdmin || role == RolePlugin || role == RoleMonitor
}

func identityURI(role, name string) *url.URL {
	return &url.URL{Scheme: URIScheme, Host: role, Path: "/" + name}
}

// Issue returns a new client certificate and its ECDSA P-256 key (PEM) for
// role (RoleAdmin or RolePlugin) and name (a document id such as "heartbeat"),
// valid from now for ttl (at most MaxClientTTL), and its serial as
// SerialString prints it. The key is returned, never stored.
func (c *CA) Issue(role, name string, ttl time.Duration) (certPEM, keyPEM []byte, serial string, err error) {
	if !validRole(role) {
		return nil, nil, "", fmt.Errorf("pki: issue: unknown role %q (want %s or %s)", role, RoleAdmin, RolePlugin)
	}
	if !nameRE.MatchString(name) {
		return nil, nil, "", fmt.Errorf("pki: issue: invalid name %q (want %s)", name, nameRE)
	}
	if ttl <= 0 || ttl > MaxClientTTL {
		return nil, nil, "", fmt.Errorf("pki: issue: lifetime %s out of range (0, %s]", ttl, MaxClientTTL)
	}
	now := c.now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: role + "/" + name, Organization: []string{"warden"}},
		NotBefore:   now,
		NotAfter:    now.Add(ttl),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{identityURI(role, name)},
	}
	certPEM, keyPEM, leaf, err := c.sign(tmpl)
	if err != nil {
		return nil, nil, "", fmt.Errorf("pki: issue %s/%s: %w", role, name, err)
	}
	serial = SerialString(leaf.SerialNumber)
	c.mu.Lock()
	for s, notAfter := range c.issued {
		if now.After(notAfter) {
			delete(c.issued, s) // past expiry nothing needs its date
		}
	}
	c.issued[serial] = leaf.NotAfter
	c.mu.Unlock()
	return certPEM, keyPEM, serial, nil
}

// WriteAdmin issues a new admin certificate (warden://admin/cli, AdminTTL)
// and writes certs/admin-key.pem and certs/admin.pem (0600, each replaced
// atomically), then revokes the admin certificate they held before, so only
// the newest one works. The agent calls it at every start.
func (c *CA) WriteAdmin() (serial string, notAfter time.Time, err error) {
	return c.writeClient(RoleAdmin, AdminName, AdminTTL, AdminCertFile, AdminKeyFile)
}

// WriteMonitor issues a new monitor certificate (warden://monitor/prometheus,
// MonitorTTL) to certs/monitor.pem and certs/monitor-key.pem (0600), and
// revokes the one it replaces, as WriteAdmin does.
func (c *CA) WriteMonitor() (serial string, notAfter time.Time, err error) {
	return c.writeClient(RoleMonitor, MonitorName, MonitorTTL, MonitorCertFile, MonitorKeyFile)
}

func (c *CA) writeClient(role, name string, ttl time.Duration, certFile, keyFile string) (serial string, notAfter time.Time, err error) {
	old, _ := readPublic(c.path(certFile))
	certPEM, keyPEM, serial, err := c.Issue(role, name, ttl)
	if err != nil {
		return "", time.Time{}, err
	}
	if err := atomicfile.Write(c.path(keyFile), keyPEM, 0o600); err != nil {
		return "", time.Time{}, fmt.Errorf("pki: write %s key: %w", role, err)
	}
	if err := atomicfile.Write(c.path(certFile), certPEM, 0o600); err != nil {
		return "", time.Time{}, fmt.Errorf("pki: write %s certificate: %w", role, err)
	}
	c.mu.RLock()
	notAfter = c.issued[serial]
	c.mu.RUnlock()
	if prev, err := parseCertPEM(old); err == nil && prev.CheckSignatureFrom(c.cert) == nil {
		if s := SerialString(prev.SerialNumber); s != serial && c.now().Before(prev.NotAfter) {
			if err := c.revoke(s, prev.NotAfter); err != nil {
				return serial, notAfter, err
			}
		}
	}
	return serial, notAfter, nil
}
