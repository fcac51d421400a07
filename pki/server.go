package pki

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"warden/atomicfile"
)

// DefaultServerTTL is the lifetime of a self-issued server certificate. A
// new one is issued at every start and by rotation, so it rarely runs out.
const DefaultServerTTL = 90 * 24 * time.Hour

// ErrCustomCert wraps why a configured custom certificate was not used.
var ErrCustomCert = errors.New("custom server certificate unusable")

// IssueServer issues a server certificate for localhost and 127.0.0.1
// (ECDSA P-256, server authentication, ttl or DefaultServerTTL when ttl <= 0)
// and writes it to certs/server-key.pem and certs/server.pem (0600, atomic).
func (c *CA) IssueServer(ttl time.Duration) (*tls.Certificate, error) {
	if ttl <= 0 {
		ttl = DefaultServerTTL
	}
	now := c.now()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost", Organization: []string{"warden"}},
		NotBefore:   now,
		NotAfter:    now.Add(ttl),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	certPEM, keyPEM, leaf, err := c.sign(tmpl)
	if err != nil {
		return nil, fmt.Errorf("pki: issue server certificate: %w", err)
	}
	if err := atomicfile.Write(c.path(ServerKeyFile), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("pki: write server key: %w", err)
	}
	if err := atomicfile.Write(c.path(ServerCertFile), certPEM, 0o600); err != nil {
		return nil, fmt.Errorf("pki: write server certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	pair.Leaf = leaf
	return &pair, nil
}

// ServerCertConfig says where the server certificate comes from.
type ServerCertConfig struct {
	// TTL of self-issued certificates; 0 means DefaultServerTTL.
	TTL time.Duration
	// CertFile and KeyFile name an operator-provided certificate (PEM, the
	// chain may follow the leaf) and its key (0600, owned by the agent's
	// user). Used when both are set and the pair is valid now for localhost
	// or 127.0.0.1; otherwise the CA issues one and Rotation.CustomErr says why.
	CertFile, KeyFile string
}

// Rotation describes the certificate a Rotate installed.
type Rotation struct {
	Custom    bool // the operator's certificate, not one issued by the CA
	Serial    string
	NotAfter  time.Time
	CustomErr error // why a configured custom certificate was not used
}

// ServerCert holds the certificate the listeners serve. Rotate swaps it
// atomically: handshakes after the swap get the new one, connections
// already established keep the one they negotiated. Safe for concurrent use.
type ServerCert struct {
	ca  *CA
	mu  sync.Mutex // serializes Rotate; guards cfg
	cfg ServerCertConfig
	cur atomic.Pointer[served]
}

type served struct {
	cert *tls.Certificate
	info Rotation
}

// NewServerCert returns a holder with no certificate yet: call Rotate
// before serving (the agent does at every start).
func NewServerCert(ca *CA, cfg ServerCertConfig) *ServerCert {
	return &ServerCert{ca: ca, cfg: cfg}
}

// SetConfig changes where the next Rotate takes the certificate from.
func (s *ServerCert) SetConfig(cfg ServerCertConfig) {
	s.mu.Lock()
	s.cfg = cfg
	s.mu.Unlock()
}

// Rotate installs a new certificate: the custom one when configured and
// valid, else a fresh one from the CA. On error the current certificate
// stays in place.
func (s *ServerCert) Rotate() (Rotation, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var customErr error
	if s.cfg.CertFile != "" || s.cfg.KeyFile != "" {
		pair, err := s.loadCustom()
		if err == nil {
			info := Rotation{Custom: true, Serial: SerialString(pair.Leaf.SerialNumber), NotAfter: pair.Leaf.NotAfter}
			s.cur.Store(&served{cert: pair, info: info})
			return info, nil
		}
		customErr = fmt.Errorf("%w: %w", ErrCustomCert, err)
	}
	pair, err := s.ca.IssueServer(s.cfg.TTL)
	if err != nil {
		return Rotation{CustomErr: customErr}, err
	}
	info := Rotation{Serial: SerialString(pair.Leaf.SerialNumber), NotAfter: pair.Leaf.NotAfter, CustomErr: customErr}
	s.cur.Store(&served{cert: pair, info: info})
	return info, nil
}

func (s *ServerCert) loadCustom() (*tls.Certificate, error) {
	if s.cfg.CertFile == "" || s.cfg.KeyFile == "" {
		return nil, errors.New("both a certificate path and a key path are needed")
	}
	certPEM, err := readPublic(s.cfg.CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readPrivate(s.cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, err
		}
	}
	leaf := pair.Leaf
	if now := s.ca.now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%s: valid %s to %s, not now", s.cfg.CertFile,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if leaf.VerifyHostname("localhost") != nil && leaf.VerifyHostname("127.0.0.1") != nil {
		return nil, fmt.Errorf("%s: valid neither for localhost nor for 127.0.0.1", s.cfg.CertFile)
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) &&
		!slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil, fmt.Errorf("%s: not a server certificate (extended key usage)", s.cfg.CertFile)
	}
	// The CLI pins what the agent serves (ClientTLSConfig): publish the
	// leaf, and drop a stale self-issued key that no longer serves anything.
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	if err := atomicfile.Write(s.ca.path(ServerCertFile), leafPEM, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", ServerCertFile, err)
	}
	if err := os.Remove(s.ca.path(ServerKeyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	return &pair, nil
}

// GetCertificate serves the current certificate; use it as
// tls.Config.GetCertificate.
func (s *ServerCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cur := s.cur.Load()
	if cur == nil {
		return nil, errors.New("pki: no server certificate yet (Rotate was not called)")
	}
	return cur.cert, nil
}

// NotAfter is when the current certificate expires (zero before Rotate).
func (s *ServerCert) NotAfter() time.Time {
	if cur := s.cur.Load(); cur != nil {
		return cur.info.NotAfter
	}
	return time.Time{}
}

// Current describes the certificate being served (zero before Rotate).
func (s *ServerCert) Current() Rotation {
	if cur := s.cur.Load(); cur != nil {
		return cur.info
	}
	return Rotation{}
}
