package source_test

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"warden/audit"
	"warden/schema"
	"warden/source"
	"warden/source/backend"
	"warden/state"
)

// setBackend applies a Settings document naming the backend.
func setBackend(t *testing.T, st *state.Store, version int64, spec string) {
	t.Helper()
	doc, err := schema.Validate("settings.json", []byte(`{"kind": "Settings", "id": "agent", "spec": {"backend": `+spec+`}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ApplyGeneration(state.Apply{BundleVersion: version, Source: "test", Docs: []*schema.Document{doc}}); err != nil {
		t.Fatal(err)
	}
}

// A 503 with Retry-After: 3600 holds a poll no longer than the poll
// interval: the poll is retried and answered long before an hour.
func TestRetryAfterCappedAtPollInterval(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "3600")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	defer srv.Close()
	a := openAgent(t, t.TempDir())
	defer a.close()
	setBackend(t, a.store, 1, `{"url": "`+srv.URL+`/v1", "pollSeconds": 5}`)
	s := source.NewSync(a.store, a.p, a.root, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.Poll(ctx)
	if err != nil || res.Status != "none" {
		t.Fatalf("poll after a 503 with Retry-After 3600: %+v, %v; want the retry (within the 5 s poll interval) answered 404", res, err)
	}
	if hits.Load() != 2 {
		t.Fatalf("backend saw %d requests; want 2", hits.Load())
	}
}

// A refused bundle from a backend that sends no ETag is refused and
// audited once, not on every poll.
func TestRefusedBundleWithoutETagAuditedOnce(t *testing.T) {
	keys := t.TempDir()
	if _, err := source.WriteKeyPair(keys); err != nil { // not in the agent's trust/
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "b.tar.gz")
	buildTo(t, keys, bundle, 7, "a")
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		data, _ := os.ReadFile(bundle)
		w.Write(data) // a plain file server: no ETag
	}))
	defer srv.Close()
	a := openAgent(t, t.TempDir())
	defer a.close()
	setBackend(t, a.store, 1, `{"url": "`+srv.URL+`/v1"}`)
	s := source.NewSync(a.store, a.p, a.root, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for i := 0; i < 3; i++ {
		res, err := s.Poll(context.Background())
		if err != nil || res.Status != "refused" || res.Err == nil {
			t.Fatalf("poll %d: %+v, %v; want refused", i, res, err)
		}
	}
	evs, _, _ := audit.Query(a.store, audit.Filter{Types: []string{audit.BundleRejected}})
	if len(evs) != 1 || hits.Load() != 3 {
		t.Fatalf("%d BUNDLE_REJECTED events over %d polls; want 1", len(evs), hits.Load())
	}
	// Once its key is trusted, the same bytes are checked again and apply.
	pub, _ := os.ReadFile(filepath.Join(keys, source.PublicKeyFile))
	os.MkdirAll(filepath.Join(a.root, "trust"), 0o700)
	os.WriteFile(filepath.Join(a.root, "trust", "backend.pub"), pub, 0o600)
	if res, err := s.Poll(context.Background()); err != nil || res.Status != "applied" || res.Meta.BundleVersion != 7 {
		t.Fatalf("poll after trusting the key: %+v, %v; want version 7 applied", res, err)
	}
}

// Plain http:// is refused for registration and sync unless the backend
// is on loopback: the token and the credential never travel in the clear.
func TestPlainHTTPBackendRefused(t *testing.T) {
	a := openAgent(t, t.TempDir())
	defer a.close()
	for _, u := range []string{"http://backend.example/v1", "http://10.0.0.1:8080/v1", "http://[fe80::1]/v1"} {
		_, err := source.Register(context.Background(), a.store, a.aw, source.RegisterOptions{URL: u, Token: "t0ken"})
		if !errors.Is(err, source.ErrPlainHTTP) {
			t.Errorf("register with %s: %v; want ErrPlainHTTP", u, err)
		}
	}
	// The schema refuses such a Settings document; a registration kept
	// from an older agent is refused at use.
	if _, err := schema.Validate("settings.json", []byte(`{"kind": "Settings", "id": "agent", "spec": {"backend": {"url": "http://backend.example/v1"}}}`)); err == nil {
		t.Error("Settings with backend.url http://backend.example validated")
	}
	if err := a.store.Put(state.Secrets, source.RegistrationKey, source.Registration{URL: "http://backend.example/v1",
		AgentID: "a1", Credential: "s3cret", Group: "lab", RegisteredAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	s := source.NewSync(a.store, a.p, a.root, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if _, err := s.Poll(context.Background()); !errors.Is(err, source.ErrPlainHTTP) {
		t.Errorf("poll of a registration at http://backend.example: %v; want ErrPlainHTTP", err)
	}
	// Loopback stays allowed (tests, a local mirror).
	for i, u := range []string{"http://127.0.0.1:1/v1", "http://localhost:1/v1", "http://[::1]:1/v1"} {
		setBackend(t, a.store, int64(2+i), `{"url": "`+u+`"}`)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := s.Poll(ctx)
		cancel()
		if errors.Is(err, source.ErrPlainHTTP) {
			t.Errorf("poll of %s refused as plain http: %v", u, err)
		}
	}
}

// Registration and sync over HTTPS, the backend verified with a CA file:
// the registration keeps the CA file, the poll applies the bundle, and an
// agent without the CA refuses the backend's certificate.
func TestSyncOverHTTPSWithCAFile(t *testing.T) {
	ctx := context.Background()
	keys, root, bdir, bundle := backendFixture(t, "enrol-tls")
	buildTo(t, keys, bundle, 1, "a", "b")

	be, err := backend.New(bdir, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(be.Handler("/v1"))
	srv.Config.ErrorLog = nil
	srv.StartTLS()
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "backend-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600)
	url := srv.URL + "/v1"
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("backend URL %s", url)
	}

	a := openAgent(t, root)
	defer a.close()
	// Without the CA file the backend's certificate is unknown: refused.
	if _, err := source.Register(ctx, a.store, a.aw, source.RegisterOptions{URL: url, Token: "enrol-tls"}); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Fatalf("register without the CA file: %v; want a certificate error", err)
	}
	reg, err := source.Register(ctx, a.store, a.aw, source.RegisterOptions{URL: url, Token: "enrol-tls", CAFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	if reg.CAFile != caFile || reg.Group != "lab" {
		t.Fatalf("registration %+v", reg)
	}
	s := source.NewSync(a.store, a.p, root, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if res, err := s.Poll(ctx); err != nil || res.Status != "applied" || res.Meta.BundleVersion != 1 {
		t.Fatalf("poll over HTTPS: %+v, %v", res, err)
	}
	if n, err := s.UploadAudit(ctx); err != nil || n == 0 {
		t.Fatalf("audit upload over HTTPS: %d events, %v", n, err)
	}
}
