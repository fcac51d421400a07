package agent

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"warden/audit"
)

// auditEvents reads every event of typ through the API.
func auditEvents(t *testing.T, c *http.Client, api, typ string) []audit.Event {
	t.Helper()
	_, body := get(t, c, "https://"+api+"/api/v1/audit?limit=10000&type="+typ)
	var out struct{ Events []audit.Event }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("audit answer %q: %v", body, err)
	}
	return out.Events
}

// A flood of refused callers with huge paths is a few capped events with a
// count, not one 30 KB event per request; the first is never dropped.
func TestRefusalFloodIsCappedAndCoalesced(t *testing.T) {
	root := t.TempDir()
	a, info := startAgent(t, root)
	c := tlsClient(t, root) // no client certificate
	long := "/api/v1/desired/Policy/" + strings.Repeat("a", 30<<10)
	const n = 200
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/8; i++ {
				resp, err := c.Get("https://" + info.API + long)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	a.refusals.Flush() // end the window now rather than wait a minute
	admin := adminClient(t, root)
	evs := auditEvents(t, admin, info.API, audit.ProcessAuthenticationFailed)
	if len(evs) < 2 || len(evs) > 4 {
		t.Fatalf("%d PROCESS_AUTHENTICATION_FAILED events for %d refusals; want the first and one with the count", len(evs), n)
	}
	total := 0
	for _, e := range evs {
		if len(e.Raw) > 2048 || len(e.TargetInfo.Path) > audit.MaxField {
			t.Fatalf("event of %d bytes, path of %d; want every field capped at %d", len(e.Raw), len(e.TargetInfo.Path), audit.MaxField)
		}
		if r, ok := e.Details["repeated"].(float64); ok {
			total += int(r) // a count event stands for the repeats only
		} else {
			total++
		}
	}
	if total != n {
		t.Fatalf("events account for %d refusals; want %d", total, n)
	}
}

// Failed TLS handshakes on the HTTPS API are audited like the broker's:
// plain HTTP, an old TLS version, no common cipher suite.
func TestAPIHandshakeFailuresAudited(t *testing.T) {
	root := t.TempDir()
	_, info := startAgent(t, root)
	cases := []struct {
		name string
		dial func() error
		want string
	}{
		{"plain HTTP", func() error {
			resp, err := http.Get("http://" + info.API + "/api/v1/status")
			if err == nil {
				resp.Body.Close()
			}
			return nil
		}, "HTTP request to an HTTPS server"},
		{"TLS 1.0", func() error {
			return tlsDial(info.API, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10})
		}, "unsupported versions"},
		{"no common cipher", func() error {
			return tlsDial(info.API, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}})
		}, "cipher"},
	}
	admin := adminClient(t, root)
	for i, tc := range cases {
		tc.dial()
		deadline := time.Now().Add(5 * time.Second)
		for {
			var got []string
			for _, e := range auditEvents(t, admin, info.API, audit.ProcessAuthenticationFailed) {
				got = append(got, e.Details["reason"].(string))
			}
			if len(got) == i+1 && strings.Contains(got[i], "TLS handshake failed") && strings.Contains(got[i], tc.want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: refusals audited %q; want %d, the last a TLS handshake failure mentioning %q", tc.name, got, i+1, tc.want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func tlsDial(addr string, cfg *tls.Config) error {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err == nil {
		c.Close()
	}
	return err
}
