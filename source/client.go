package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"time"

	"github.com/hashicorp/go-cleanhttp"
	"github.com/hashicorp/go-retryablehttp"
)

// newHTTPClient is a retrying client for the backend: TLS 1.2+ verified
// against the system roots, or only against caFile when one is given, a
// few quick retries with jittered exponential backoff inside one call
// (the sync loop backs off further between calls).
//
// A server's Retry-After is honoured up to maxRetryAfter (the poll
// interval for sync): a "Retry-After: 3600" must not stall polling for
// hours (docs/bundles.md).
func newHTTPClient(caFile string, logger *slog.Logger, maxRetryAfter func() time.Duration) (*retryablehttp.Client, error) {
	tr := cleanhttp.DefaultPooledTransport()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("backend CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("backend CA %s: no certificate", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{Transport: tr, Timeout: 60 * time.Second, CheckRedirect: checkRedirect}
	c.RetryMax = 2
	c.RetryWaitMin = 200 * time.Millisecond
	c.RetryWaitMax = 2 * time.Second
	c.Backoff = func(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
			if d := retryablehttp.DefaultBackoff(min, max, attempt, resp); d > min {
				return capDuration(d, maxRetryAfter()) // the server's Retry-After
			}
		}
		return jitter(min, max, attempt)
	}
	// Give up on the last response instead of wrapping it in an error, so
	// callers see the status (401, 404) and act on it.
	c.ErrorHandler = retryablehttp.PassthroughErrorHandler
	if logger != nil {
		c.Logger = quietLogger{logger}
	} else {
		c.Logger = nil
	}
	return c, nil
}

// quietLogger hands go-retryablehttp's per-attempt messages to slog at
// Debug: the sync loop logs the outcome of each call once, at Warn.
type quietLogger struct{ l *slog.Logger }

func (q quietLogger) Error(msg string, kv ...any) { q.l.Debug(msg, kv...) }
func (q quietLogger) Warn(msg string, kv ...any)  { q.l.Debug(msg, kv...) }
func (q quietLogger) Info(msg string, kv ...any)  { q.l.Debug(msg, kv...) }
func (q quietLogger) Debug(msg string, kv ...any) { q.l.Debug(msg, kv...) }

// jitter is exponential backoff with "equal jitter": half the step is
// fixed, half random, so a fleet that lost its backend at the same moment
// does not come back in lockstep.
func jitter(base, limit time.Duration, attempt int) time.Duration {
	d := base
	for i := 0; i < attempt && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// checkRedirect follows a redirect only to a URL the backend rule allows:
// a 307 from an https backend to plain http:// elsewhere would send the
// registration token (in the body) in the clear.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	if _, err := backendURL(req.URL.Scheme + "://" + req.URL.Host); err != nil {
		return fmt.Errorf("redirect to %s refused: %w", req.URL.Redacted(), err)
	}
	return nil
}

func capDuration(d, limit time.Duration) time.Duration {
	if limit > 0 && d > limit {
		return limit
	}
	return d
}
