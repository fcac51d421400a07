package pki_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"warden/pki"
)

func TestOpenCreatesThenLoads(t *testing.T) {
	dir := certsDir(t)
	clk := newClock()
	first := openCA(t, dir, clk)
	if got := mode(t, dir); got != 0o700 {
		t.Errorf("certs folder mode %04o, want 0700", got)
	}
	for _, f := range []string{pki.CACertFile, pki.CAKeyFile} {
		if got := mode(t, filepath.Join(dir, f)); got != 0o600 {
			t.Errorf("%s mode %04o, want 0600", f, got)
		}
	}
	ca := first.Certificate()
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) != pki.CALifetime {
		t.Errorf("CA: IsCA %v, lifetime %s, want a CA valid %s", ca.IsCA, ca.NotAfter.Sub(ca.NotBefore), pki.CALifetime)
	}
	again := openCA(t, dir, clk)
	if !bytes.Equal(first.CertPEM(), again.CertPEM()) {
		t.Error("second Open made a new CA, want the stored one")
	}
	// A certificate issued before the restart still identifies.
	certPEM, _, _, err := first.Issue(pki.RolePlugin, "p1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.IdentifyCertificate(parseCert(t, certPEM)); err != nil {
		t.Errorf("Identify after reopen: %v", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(t *testing.T, dir string)
		wantErr error // nil: any error
	}{
		{"key readable by group", func(t *testing.T, dir string) {
			chmod(t, filepath.Join(dir, pki.CAKeyFile), 0o640)
		}, pki.ErrInsecureFile},
		{"key readable by world", func(t *testing.T, dir string) {
			chmod(t, filepath.Join(dir, pki.CAKeyFile), 0o604)
		}, pki.ErrInsecureFile},
		{"key is a symlink", func(t *testing.T, dir string) {
			key := filepath.Join(dir, pki.CAKeyFile)
			moved := filepath.Join(t.TempDir(), "key.pem")
			if err := os.Rename(key, moved); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(moved, key); err != nil {
				t.Fatal(err)
			}
		}, pki.ErrInsecureFile},
		{"key missing", func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, pki.CAKeyFile)); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"key of another CA", func(t *testing.T, dir string) {
			other := certsDir(t)
			openCA(t, other, newClock())
			key := readFile(t, filepath.Join(other, pki.CAKeyFile))
			if err := os.WriteFile(filepath.Join(dir, pki.CAKeyFile), key, 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"revocation list corrupt", func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, pki.RevokedFile), []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := certsDir(t)
			openCA(t, dir, newClock())
			tt.tamper(t, dir)
			_, err := pki.Open(dir, nil)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("Open = %v, want %v", err, tt.wantErr)
			}
			t.Log(err)
		})
	}
}

func TestOpenRefusesExpiredCA(t *testing.T) {
	dir := certsDir(t)
	clk := newClock()
	openCA(t, dir, clk)
	clk.Advance(pki.CALifetime + time.Hour)
	if _, err := pki.Open(dir, clk.Now); !errors.Is(err, pki.ErrExpired) {
		t.Fatalf("Open with an expired CA = %v, want ErrExpired", err)
	}
}

// An interrupted creation leaves a key without ca.pem, and a crash during an
// atomic write leaves a temporary file: Open starts over cleanly.
func TestOpenAfterInterruptedCreate(t *testing.T) {
	dir := certsDir(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "."+pki.CAKeyFile+".tmp-123")
	for _, f := range []string{pki.CAKeyFile, stale} {
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), []byte("half"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	openCA(t, dir, newClock())
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temporary file still there: %v", err)
	}
}

func TestWriteAdmin(t *testing.T) {
	dir := certsDir(t)
	clk := newClock()
	ca := openCA(t, dir, clk)
	first, notAfter, err := ca.WriteAdmin()
	if err != nil {
		t.Fatal(err)
	}
	if want := clk.Now().Add(pki.AdminTTL).Truncate(time.Second); !notAfter.Equal(want) {
		t.Errorf("admin NotAfter %s, want %s", notAfter, want)
	}
	for _, f := range []string{pki.AdminCertFile, pki.AdminKeyFile} {
		if got := mode(t, filepath.Join(dir, f)); got != 0o600 {
			t.Errorf("%s mode %04o, want 0600", f, got)
		}
	}
	oldCert := parseCert(t, readFile(t, filepath.Join(dir, pki.AdminCertFile)))
	id, err := ca.IdentifyCertificate(oldCert)
	if err != nil || id.Role != pki.RoleAdmin || id.Name != pki.AdminName || id.Serial != first {
		t.Fatalf("Identify(admin.pem) = %+v, %v; want admin/cli serial %s", id, err, first)
	}

	// The next start re-issues and revokes the previous one, durably.
	second, _, err := openCA(t, dir, clk).WriteAdmin()
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("WriteAdmin reused the serial")
	}
	if _, err := openCA(t, dir, clk).IdentifyCertificate(oldCert); !errors.Is(err, pki.ErrRevoked) {
		t.Errorf("previous admin certificate: %v, want ErrRevoked", err)
	}
}

func chmod(t *testing.T, path string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, m); err != nil {
		t.Fatal(err)
	}
}
