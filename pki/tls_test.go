package pki_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"warden/pki"
)

func TestServerTLSVersionsAndSuites(t *testing.T) {
	ca := openCA(t, certsDir(t), newClock())
	addr, _ := identifyServer(t, ca)
	tests := []struct {
		name   string
		cfg    *tls.Config
		wantOK bool
	}{
		{"TLS 1.0", &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}, false},
		{"TLS 1.1", &tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}, false},
		{"TLS 1.2 CBC only", &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, false},
		{"TLS 1.2 AEAD", &tls.Config{MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}, true},
		{"TLS 1.3", &tls.Config{MinVersion: tls.VersionTLS13}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.RootCAs = ca.Pool()
			conn, err := tls.Dial("tcp", addr, tt.cfg)
			if err == nil {
				conn.Close()
			}
			t.Logf("handshake: %v", err)
			if ok := err == nil; ok != tt.wantOK {
				t.Errorf("handshake error %v, want success %v", err, tt.wantOK)
			}
		})
	}
}

func TestServerCertificateNames(t *testing.T) {
	ca := openCA(t, certsDir(t), newClock())
	addr, holder := identifyServer(t, ca)
	_, port, _ := net.SplitHostPort(addr)
	for _, host := range []string{"127.0.0.1", "localhost"} {
		conn, err := tls.Dial("tcp", "127.0.0.1:"+port, &tls.Config{RootCAs: ca.Pool(), ServerName: host})
		if err != nil {
			t.Errorf("verify server certificate as %s: %v", host, err)
			continue
		}
		leaf := conn.ConnectionState().PeerCertificates[0]
		if pki.SerialString(leaf.SerialNumber) != holder.Current().Serial || !leaf.NotAfter.Equal(holder.NotAfter()) {
			t.Errorf("served serial %s, holder says %+v", pki.SerialString(leaf.SerialNumber), holder.Current())
		}
		conn.Close()
	}
	for _, f := range []string{pki.ServerCertFile, pki.ServerKeyFile} {
		if got := mode(t, filepath.Join(ca.Dir(), f)); got != 0o600 {
			t.Errorf("%s mode %04o, want 0600", f, got)
		}
	}
}

// Rotation reaches new connections while an open one keeps working with the
// certificate it negotiated.
func TestRotateWhileConnectionOpen(t *testing.T) {
	ca := openCA(t, certsDir(t), newClock())
	holder := pki.NewServerCert(ca, pki.ServerCertConfig{})
	if _, err := holder.Rotate(); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", pki.ServerTLSConfig(ca, holder))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echoServer(ln)

	dial := func() (*tls.Conn, string) {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool()})
		if err != nil {
			t.Fatal(err)
		}
		return c, pki.SerialString(c.ConnectionState().PeerCertificates[0].SerialNumber)
	}
	old, oldSerial := dial()
	defer old.Close()
	rot, err := holder.Rotate()
	if err != nil {
		t.Fatal(err)
	}
	if rot.Serial == oldSerial || rot.Custom {
		t.Fatalf("Rotate = %+v, want a new self-issued certificate (old %s)", rot, oldSerial)
	}
	fresh, freshSerial := dial()
	defer fresh.Close()
	if freshSerial != rot.Serial {
		t.Errorf("new connection got serial %s, want the rotated %s", freshSerial, rot.Serial)
	}
	for _, c := range []*tls.Conn{old, fresh} {
		if got := echo(t, c, "ping\n"); got != "ping\n" {
			t.Errorf("echo = %q", got)
		}
	}
}

func TestClientTLSConfigWithAdmin(t *testing.T) {
	ca := openCA(t, certsDir(t), newClock())
	if _, _, err := ca.WriteAdmin(); err != nil {
		t.Fatal(err)
	}
	addr, _ := identifyServer(t, ca)
	cfg, err := pki.ClientTLSConfig(ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if status, body := httpsGet(t, cfg, addr); status != 200 || body != "admin/cli" {
		t.Errorf("got %d %q, want 200 admin/cli", status, body)
	}
	chmod(t, filepath.Join(ca.Dir(), pki.AdminKeyFile), 0o644)
	if _, err := pki.ClientTLSConfig(ca.Dir()); !errors.Is(err, pki.ErrInsecureFile) {
		t.Errorf("ClientTLSConfig with a world-readable key = %v, want ErrInsecureFile", err)
	}
}

func TestCustomServerCertificate(t *testing.T) {
	ca := openCA(t, certsDir(t), newClock())
	if _, _, err := ca.WriteAdmin(); err != nil {
		t.Fatal(err)
	}
	// The operator's certificate comes from their own PKI: here another CA.
	corp := openCA(t, certsDir(t), newClock())
	if _, err := corp.IssueServer(0); err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(corp.Dir(), pki.ServerCertFile)
	keyFile := filepath.Join(corp.Dir(), pki.ServerKeyFile)

	addr, holder := identifyServer(t, ca)
	holder.SetConfig(pki.ServerCertConfig{CertFile: certFile, KeyFile: keyFile})
	rot, err := holder.Rotate()
	if err != nil || !rot.Custom || rot.CustomErr != nil {
		t.Fatalf("Rotate = %+v, %v; want the custom certificate", rot, err)
	}
	if _, err := os.Stat(filepath.Join(ca.Dir(), pki.ServerKeyFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale self-issued server key left behind: %v", err)
	}
	// The CLI trusts what the agent serves.
	cfg, err := pki.ClientTLSConfig(ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if status, body := httpsGet(t, cfg, addr); status != 200 || body != "admin/cli" {
		t.Errorf("with custom certificate: got %d %q, want 200 admin/cli", status, body)
	}

	// A custom key others can read is not used: the CA issues one instead.
	chmod(t, keyFile, 0o644)
	rot, err = holder.Rotate()
	if err != nil || rot.Custom || !errors.Is(rot.CustomErr, pki.ErrCustomCert) || !errors.Is(rot.CustomErr, pki.ErrInsecureFile) {
		t.Fatalf("Rotate with loose custom key = %+v, %v; want a self-issued certificate and the reason", rot, err)
	}
	cfg, err = pki.ClientTLSConfig(ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := httpsGet(t, cfg, addr); status != 200 {
		t.Errorf("after falling back: status %d, want 200", status)
	}
}

func TestGetCertificateBeforeRotate(t *testing.T) {
	holder := pki.NewServerCert(openCA(t, certsDir(t), newClock()), pki.ServerCertConfig{})
	if _, err := holder.GetCertificate(nil); err == nil {
		t.Error("GetCertificate before Rotate succeeded, want error")
	}
	if !holder.NotAfter().IsZero() {
		t.Error("NotAfter before Rotate is not zero")
	}
}

func echoServer(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if _, err := c.Write([]byte(line)); err != nil {
					return
				}
			}
		}()
	}
}

func echo(t *testing.T, c *tls.Conn, msg string) string {
	t.Helper()
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return line
}
