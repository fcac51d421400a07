package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"log/slog"

	"warden/pki"
)

// startAgent runs an agent on a fresh root with free loopback ports.
func startAgent(t testing.TB, root string) (*agent, Info) {
	t.Helper()
	var info Info
	a := &agent{opts: Options{Root: root, ListenAPI: "127.0.0.1:0", ListenHealth: "127.0.0.1:0",
		ListenMQTT: "127.0.0.1:0", LogOutput: io.Discard, Ready: func(i Info) { info = i }}}
	a.level = new(slog.LevelVar)
	if err := prepareRoot(root); err != nil {
		t.Fatal(err)
	}
	if err := a.start(context.Background()); err != nil {
		a.stop()
		t.Fatal(err)
	}
	t.Cleanup(a.stop)
	return a, info
}

func tlsClient(t testing.TB, root string, certs ...tls.Certificate) *http.Client {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(root, "certs", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, Certificates: certs, ServerName: "localhost"}}}
}

func pair(t testing.TB, certPEM, keyPEM []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// foreignCert is a client certificate from a CA the agent never heard of,
// with the same role URI an admin certificate carries.
func foreignCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(key)
	return pair(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}))
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRefusedCallersAreAudited(t *testing.T) {
	root := t.TempDir()
	a, info := startAgent(t, root)
	certs := filepath.Join(root, "certs")
	admin := pair(t, must(os.ReadFile(filepath.Join(certs, "admin.pem"))), must(os.ReadFile(filepath.Join(certs, "admin-key.pem"))))
	pc, pk, _, err := a.ca.Issue(pki.RolePlugin, "heartbeat", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	plugin := pair(t, pc, pk)
	rc, rk, serial, _ := a.ca.Issue(pki.RoleAdmin, "revoked", time.Hour)
	if err := a.ca.Revoke(serial); err != nil {
		t.Fatal(err)
	}
	// A CA handle whose clock is two days back issues a certificate that
	// expired yesterday.
	past, err := pki.Open(certs, func() time.Time { return time.Now().Add(-48 * time.Hour) })
	if err != nil {
		t.Fatal(err)
	}
	ec, ek, _, err := past.Issue(pki.RoleAdmin, "expired", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + info.API
	cases := []struct {
		name   string
		client *http.Client
		path   string
		hdr    []string
		want   int
	}{
		{"no certificate", tlsClient(t, root), "/api/v1/status", nil, 401},
		{"foreign CA", tlsClient(t, root, foreignCert(t)), "/api/v1/status", nil, 401},
		{"expired", tlsClient(t, root, pair(t, ec, ek)), "/api/v1/status", nil, 401},
		{"revoked", tlsClient(t, root, pair(t, rc, rk)), "/api/v1/status", nil, 401},
		{"plugin on admin route", tlsClient(t, root, plugin), "/api/v1/audit", nil, 403},
		{"bad Host", tlsClient(t, root, admin), "/api/v1/status", []string{"Host", "evil.example"}, 400},
		{"browser Origin", tlsClient(t, root, admin), "/api/v1/status", []string{"Origin", "http://evil.example"}, 400},
		{"plugin on status", tlsClient(t, root, plugin), "/api/v1/status", nil, 200},
		{"admin", tlsClient(t, root, admin), "/api/v1/status", nil, 200},
		{"health without certificate", tlsClient(t, root), "/health", nil, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, tc.client, base+tc.path, tc.hdr...)
			if code != tc.want {
				t.Fatalf("GET %s = %d %s; want %d", tc.path, code, body, tc.want)
			}
			if code >= 400 && !strings.Contains(body, `"code"`) {
				t.Fatalf("error body %q lacks {error, code}", body)
			}
		})
	}
	adminC := tlsClient(t, root, admin)
	// The foreign certificate is not sent (the server names its CA), so
	// that refusal repeats "no client certificate" from the same process:
	// counted into one event when the window ends.
	a.refusals.Flush()
	for typ, want := range map[string]int{"PROCESS_AUTHENTICATION_FAILED": 4, "AUTHORIZATION_FAILED": 1} {
		_, body := get(t, adminC, base+"/api/v1/audit?type="+typ)
		var out struct {
			Events []struct {
				UserInfo struct {
					PeerAddr string `json:"peerAddr"`
					PeerPID  int    `json:"peerPid"`
				} `json:"user_info"`
				Details map[string]any `json:"details"`
			} `json:"events"`
		}
		json.Unmarshal([]byte(body), &out)
		n := 0
		for _, e := range out.Events {
			n++
			if r, ok := e.Details["repeated"].(float64); ok {
				n += int(r) - 1 // the count event repeats the first's fields
			}
		}
		if n != want {
			t.Fatalf("%s events account for %d refusals; want %d (%s)", typ, n, want, body)
		}
		if !strings.HasPrefix(out.Events[0].UserInfo.PeerAddr, "127.0.0.1:") {
			t.Fatalf("%s event lacks the peer address: %s", typ, body)
		}
	}
}

func TestBadRequestsAre4xx(t *testing.T) {
	root := t.TempDir()
	_, info := startAgent(t, root)
	c := adminClient(t, root)
	url := "https://" + info.API + "/api/v1/desired/Policy/p1"
	cases := []struct {
		name, ctype, body string
		want              int
	}{
		{"malformed JSON", "application/json", `{"kind": "Policy",`, 400},
		{"wrong content type", "text/plain", `{}`, 415},
		{"unknown field", "application/json", `{"kind": "Policy", "id": "p1", "spec": {"name": "x", "type": "PrivilegeElevation", "status": "enforce", "controls": ["deny"], "filters": {}, "bogus": 1}}`, 400},
		{"too large", "application/json", `{"x": "` + strings.Repeat("a", 2<<20) + `"}`, 413},
		{"valid", "application/json", `{"kind": "Policy", "id": "p1", "spec": {"name": "x", "type": "PrivilegeElevation", "status": "enforce", "controls": ["deny"], "filters": {}}}`, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("PUT", url, bytes.NewBufferString(tc.body))
			req.Header.Set("Content-Type", tc.ctype)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("PUT = %d %s; want %d", resp.StatusCode, b, tc.want)
			}
		})
	}
}

func TestStartStopLeavesNothingBehind(t *testing.T) {
	before := runtime.NumGoroutine()
	root := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Root: root, ListenAPI: "127.0.0.1:0", ListenHealth: "127.0.0.1:0",
			ListenMQTT: "127.0.0.1:0", LogOutput: io.Discard, Ready: func(i Info) { ready <- i }})
	}()
	var info Info
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	if got, err := ReadInfo(root); err != nil || got.API != info.API {
		t.Fatalf("run/agent.json = %+v, %v; want api %s", got, err, info.API)
	}
	if st, _ := os.Stat(filepath.Join(root, InfoPath)); st.Mode().Perm() != 0o600 {
		t.Fatalf("run/agent.json mode %o; want 600", st.Mode().Perm())
	}
	if code, _ := get(t, http.DefaultClient, "http://"+info.Health+"/health"); code != 200 {
		t.Fatalf("/health = %d", code)
	}
	// A second agent on the same root is refused: the store is held.
	err := Run(context.Background(), Options{Root: root, ListenAPI: "127.0.0.1:0", ListenHealth: "127.0.0.1:0",
		ListenMQTT: "127.0.0.1:0", LogOutput: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "another agent") {
		t.Fatalf("second agent on one root: %v; want a refusal naming another agent", err)
	}
	// ... and it touches nothing of the running one: run/agent.json stays.
	if got, err := ReadInfo(root); err != nil || got.API != info.API {
		t.Fatalf("after a refused second agent, run/agent.json = %+v, %v; want api %s", got, err, info.API)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("agent did not stop within 5 s")
	}
	if _, err := os.Stat(filepath.Join(root, InfoPath)); !os.IsNotExist(err) {
		t.Fatalf("run/agent.json left behind: %v", err)
	}
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines: %d before, %d after stop\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func TestRefusesUnsafeStarts(t *testing.T) {
	cases := []struct {
		name  string
		setup func(root string)
		opts  Options
		want  string
	}{
		{"non-loopback API", nil, Options{ListenAPI: "0.0.0.0:0"}, "loopback"},
		{"host name", nil, Options{ListenMQTT: "localhost:0"}, "loopback"},
		// One rule for all three listeners: the broker's (127.0.0.1 only).
		{"IPv6 loopback API", nil, Options{ListenAPI: "[::1]:0"}, "127.0.0.1:PORT"},
		{"other loopback health", nil, Options{ListenHealth: "127.0.0.2:0"}, "127.0.0.1:PORT"},
		{"other loopback broker", nil, Options{ListenMQTT: "127.0.0.2:0"}, "127.0.0.1:PORT"},
		{"world-writable root", func(r string) { os.Chmod(r, 0o777) }, Options{}, "writable"},
		{"group-writable KeeperStorage", func(r string) {
			os.Mkdir(filepath.Join(r, "KeeperStorage"), 0o770)
			os.Chmod(filepath.Join(r, "KeeperStorage"), 0o770)
		}, Options{}, "writable"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.setup != nil {
				tc.setup(root)
			}
			o := tc.opts
			o.Root, o.LogOutput = root, io.Discard
			if o.ListenAPI == "" {
				o.ListenAPI = "127.0.0.1:0"
			}
			if o.ListenHealth == "" {
				o.ListenHealth = "127.0.0.1:0"
			}
			if o.ListenMQTT == "" {
				o.ListenMQTT = "127.0.0.1:0"
			}
			err := Run(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run = %v; want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
