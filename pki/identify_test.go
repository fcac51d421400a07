package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"warden/pki"
)

func TestIdentifyOverTLS(t *testing.T) {
	// prepare returns the client certificate and key to present (nil: none),
	// and may revoke or move the clock.
	tests := []struct {
		name       string
		prepare    func(t *testing.T, ca *pki.CA, clk *fakeClock) (certPEM, keyPEM []byte)
		wantStatus int
		wantBody   string
	}{
		{"no certificate", func(t *testing.T, ca *pki.CA, clk *fakeClock) ([]byte, []byte) {
			return nil, nil
		}, 401, "no-certificate"},
		{"another CA", func(t *testing.T, ca *pki.CA, clk *fakeClock) ([]byte, []byte) {
			other := openCA(t, certsDir(t), clk)
			c, k, _, err := other.Issue(pki.RoleAdmin, "cli", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return c, k
		}, 401, "unknown-ca"},
		{"expired", func(t *testing.T, ca *pki.CA, clk *fakeClock) ([]byte, []byte) {
			c, k, _, err := ca.Issue(pki.RolePlugin, "heartbeat", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			clk.Advance(2 * time.Hour)
			return c, k
		}, 401, "expired"},
		{"revoked", func(t *testing.T, ca *pki.CA, clk *fakeClock) ([]byte, []byte) {
			c, k, serial, err := ca.Issue(pki.RolePlugin, "heartbeat", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if err := ca.Revoke(serial); err != nil {
				t.Fatal(err)
			}
			return c, k
		}, 401, "revoked"},
		{"the CA certificate itself", func(t *testing.T, ca *pki.CA, clk *fakeClock) ([]byte, []byte) {
			return ca.CertPEM(), readFile(t, filepath.Join(ca.Dir(), pki.CAKeyFile))
		}, 401, "invalid"},
		{"the server certificate", func(t *testing.T, ca *pki.CA, clk *fakeClock) ([]byte, []byte) {
			return readFile(t, filepath.Join(ca.Dir(), pki.ServerCertFile)),
				readFile(t, filepath.Join(ca.Dir(), pki.ServerKeyFile))
		}, 401, "invalid"},
		{"admin", func(t *testing.T, ca *pki.CA, clk *fakeClock) ([]byte, []byte) {
			c, k, _, err := ca.Issue(pki.RoleAdmin, "cli", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return c, k
		}, 200, "admin/cli"},
		{"plugin", func(t *testing.T, ca *pki.CA, clk *fakeClock) ([]byte, []byte) {
			c, k, _, err := ca.Issue(pki.RolePlugin, "heartbeat", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return c, k
		}, 200, "plugin/heartbeat"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := newClock()
			ca := openCA(t, certsDir(t), clk)
			addr, _ := identifyServer(t, ca)
			certPEM, keyPEM := tt.prepare(t, ca, clk)
			cfg := &tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
			if certPEM != nil {
				pair, err := tls.X509KeyPair(certPEM, keyPEM)
				if err != nil {
					t.Fatal(err)
				}
				cfg.Certificates = []tls.Certificate{pair}
			}
			status, body := httpsGet(t, cfg, addr)
			if status != tt.wantStatus || body != tt.wantBody {
				t.Errorf("got %d %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

func TestIdentifyReturnsSerialAndExpiry(t *testing.T) {
	clk := newClock()
	ca := openCA(t, certsDir(t), clk)
	certPEM, _, serial, err := ca.Issue(pki.RolePlugin, "heartbeat", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leaf := parseCert(t, certPEM)
	id, err := ca.Identify(tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}})
	if err != nil {
		t.Fatal(err)
	}
	want := pki.Identity{Role: pki.RolePlugin, Name: "heartbeat", Serial: serial, NotAfter: leaf.NotAfter}
	if id != want {
		t.Errorf("got %+v, want %+v", id, want)
	}
	if got := id.String(); got != "warden://plugin/heartbeat" {
		t.Errorf("String() = %q", got)
	}
}

func TestIssueRefusesBadInput(t *testing.T) {
	ca := openCA(t, certsDir(t), newClock())
	tests := []struct {
		name, role, id string
		ttl            time.Duration
	}{
		{"unknown role", "root", "x", time.Hour},
		{"bad name", pki.RolePlugin, "../etc", time.Hour},
		{"empty name", pki.RolePlugin, "", time.Hour},
		{"zero ttl", pki.RolePlugin, "x", 0},
		{"ttl too long", pki.RolePlugin, "x", pki.MaxClientTTL + time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, _, err := ca.Issue(tt.role, tt.id, tt.ttl); err == nil {
				t.Errorf("Issue(%q, %q, %s) succeeded, want error", tt.role, tt.id, tt.ttl)
			}
		})
	}
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatal("no PEM block")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A certificate verified once is remembered, but its dates and revocation
// are checked on every call: the cache saves the signature check only.
func TestIdentifyRechecksDatesAndRevocationAfterCaching(t *testing.T) {
	clk := newClock()
	ca := openCA(t, certsDir(t), clk)
	certPEM, _, serial, err := ca.Issue(pki.RoleAdmin, "cli", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st := tls.ConnectionState{PeerCertificates: []*x509.Certificate{parseCert(t, certPEM)}}
	for i := 0; i < 2; i++ {
		if _, err := ca.Identify(st); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	clk.Advance(2 * time.Hour)
	if _, err := ca.Identify(st); !errors.Is(err, pki.ErrExpired) {
		t.Fatalf("after expiry: %v; want ErrExpired", err)
	}
	clk.Advance(-2 * time.Hour)
	if err := ca.Revoke(serial); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Identify(st); !errors.Is(err, pki.ErrRevoked) {
		t.Fatalf("after revocation: %v; want ErrRevoked", err)
	}
}
