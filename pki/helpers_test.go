package pki_test

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"warden/pki"
)

// fakeClock is the injected clock: tests move time, they never sleep.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openCA(t *testing.T, dir string, clk *fakeClock) *pki.CA {
	t.Helper()
	ca, err := pki.Open(dir, clk.Now)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return ca
}

// reason names a refusal the way an audit record would.
func reason(err error) string {
	switch {
	case errors.Is(err, pki.ErrNoCertificate):
		return "no-certificate"
	case errors.Is(err, pki.ErrUnknownCA):
		return "unknown-ca"
	case errors.Is(err, pki.ErrExpired):
		return "expired"
	case errors.Is(err, pki.ErrRevoked):
		return "revoked"
	case errors.Is(err, pki.ErrInvalidCertificate):
		return "invalid"
	}
	return "other: " + err.Error()
}

// identifyServer serves HTTPS on 127.0.0.1:0 with ServerTLSConfig; its one
// handler answers 200 "ROLE/NAME" for an identified caller and 401 with the
// refusal reason otherwise, as the API's middleware will.
func identifyServer(t *testing.T, ca *pki.CA) (addr string, holder *pki.ServerCert) {
	t.Helper()
	holder = pki.NewServerCert(ca, pki.ServerCertConfig{})
	if _, err := holder.Rotate(); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig: pki.ServerTLSConfig(ca, holder),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := ca.Identify(*r.TLS)
			if err != nil {
				w.WriteHeader(http.StatusUnauthorized)
				io.WriteString(w, reason(err))
				return
			}
			io.WriteString(w, id.Role+"/"+id.Name)
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ServeTLS(ln, "", "")
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return ln.Addr().String(), holder
}

func httpsGet(t *testing.T, cfg *tls.Config, addr string) (int, string) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("GET %s: %v", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func certsDir(t *testing.T) string { return filepath.Join(t.TempDir(), "certs") }
