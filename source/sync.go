package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"warden/schema"
	"warden/state"
)

// Sync defaults.
const (
	syncMinBackoff  = time.Second
	syncUploadEvery = 10 * time.Second
	syncBatch       = 500
)

// Sync keeps the agent in step with its backend: it polls for the group's
// bundle (one small request when nothing changed, thanks to ETag and
// If-None-Match) and applies a new one through the Pipeline, and uploads
// audit events in batches, resuming after the last acknowledged one.
//
// The backend is Settings backend.url (with backend.caFile and
// backend.group), or, when Settings names none, the URL the agent
// registered with. Bundles can be polled without registration (from a
// static file server); audit upload needs it.
type Sync struct {
	store *state.Store
	p     *Pipeline
	root  string
	log   *slog.Logger

	minBackoff  time.Duration
	maxBackoff  time.Duration  // 0: the poll interval (uploads: a minute)
	poll        time.Duration  // 0: Settings backend.pollSeconds
	longPoll    *time.Duration // nil: Settings backend.longPollSeconds
	uploadEvery time.Duration
	batch       int

	// pollEvery is the poll interval in effect, the cap on a backend's
	// Retry-After.
	pollEvery atomic.Int64

	mu        sync.Mutex
	client    *retryablehttp.Client
	clientFor string // caFile the client was built for
	etag      string
	etagURL   string
	// refused is the SHA-256 of the last bundle the pipeline refused, with
	// the refusal: a backend that sends no ETag serves the same bytes on
	// every poll, and they are refused and audited once, not every poll.
	refused      [sha256.Size]byte
	refusedErr   error
	refusedStamp string // the pipeline's acceptance stamp then (Pipeline.stamp)
}

// NewSync syncs store with the backend named in its Settings or
// registration, applying bundles through p. root is the agent root that a
// relative backend.caFile is resolved against.
func NewSync(store *state.Store, p *Pipeline, root string, logger *slog.Logger) *Sync {
	if logger == nil {
		logger = slog.Default()
	}
	return &Sync{store: store, p: p, root: root, log: logger.With("component", "sync"),
		minBackoff: syncMinBackoff, uploadEvery: syncUploadEvery, batch: syncBatch}
}

// endpoint is the backend as configured now.
type endpoint struct {
	url, caFile, group string
	poll               time.Duration
	longPoll           time.Duration // 0: off
	reg                *Registration // nil when not registered
}

// ErrNoBackend is returned by Poll and UploadAudit when no backend is
// configured.
var ErrNoBackend = errors.New("no backend configured (Settings backend.url, or warden register)")

func (s *Sync) endpoint() (*endpoint, error) {
	reg, err := LoadRegistration(s.store)
	if err != nil && !errors.Is(err, ErrNotRegistered) {
		return nil, err
	}
	ep := &endpoint{group: DefaultGroup, poll: time.Duration(schema.DefaultPollSeconds) * time.Second,
		longPoll: time.Duration(schema.DefaultLongPollSeconds) * time.Second}
	if reg != nil {
		ep.reg, ep.url, ep.caFile, ep.group = reg, reg.URL, reg.CAFile, reg.Group
	}
	if b := s.store.Current().Settings().Backend; b != nil {
		ep.url = b.URL
		if b.CAFile != "" {
			ep.caFile = b.CAFile
		}
		if b.Group != "" {
			ep.group = b.Group
		}
		if b.PollSeconds > 0 {
			ep.poll = time.Duration(b.PollSeconds) * time.Second
		}
		if b.LongPollSeconds != nil {
			ep.longPoll = time.Duration(*b.LongPollSeconds) * time.Second
		}
	}
	if ep.url == "" {
		return nil, ErrNoBackend
	}
	if ep.url, err = backendURL(ep.url); err != nil {
		return nil, err
	}
	// The credential goes only to the backend that issued it: a Settings
	// document naming another backend must not collect it.
	if ep.reg != nil {
		if regURL, err := backendURL(ep.reg.URL); err != nil || regURL != ep.url {
			s.log.Warn("backend in Settings is not the one this agent registered with; polling without credentials",
				"settings", ep.url, "registered", ep.reg.URL)
			ep.reg = nil
		}
	}
	if ep.caFile != "" && !filepath.IsAbs(ep.caFile) {
		ep.caFile = filepath.Join(s.root, ep.caFile)
	}
	if s.poll > 0 {
		ep.poll = s.poll
	}
	if s.longPoll != nil {
		ep.longPoll = *s.longPoll
	}
	s.pollEvery.Store(int64(ep.poll))
	return ep, nil
}

func (s *Sync) httpClient(ep *endpoint) (*retryablehttp.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil && s.clientFor == ep.caFile {
		return s.client, nil
	}
	c, err := newHTTPClient(ep.caFile, s.log, s.retryCap)
	if err != nil {
		return nil, err
	}
	c.RetryWaitMin = min(c.RetryWaitMin, s.minBackoff)
	s.client, s.clientFor = c, ep.caFile
	return c, nil
}

// retryCap is the longest a backend's Retry-After may hold a request: the
// poll interval (and, in tests, the shortened backoff ceiling).
func (s *Sync) retryCap() time.Duration {
	d := time.Duration(s.pollEvery.Load())
	if d <= 0 {
		d = time.Duration(schema.DefaultPollSeconds) * time.Second
	}
	if s.maxBackoff > 0 {
		d = min(d, s.maxBackoff)
	}
	return d
}

func (ep *endpoint) agentID() string {
	if ep.reg == nil {
		return "-"
	}
	return ep.reg.AgentID
}

func (ep *endpoint) authorize(r *retryablehttp.Request) {
	if ep.reg != nil {
		r.Header.Set("Authorization", "Bearer "+ep.reg.Credential)
	}
}

// PollResult says what one poll did.
type PollResult struct {
	Status string     // "unchanged", "applied", "refused", "none" (no bundle for the group)
	Meta   state.Meta // the new generation, when applied
	Err    error      // the refusal, when refused
	// LongPoll says the backend honoured the agent's offer to wait
	// (Preference-Applied: wait=N): it holds a request until a new bundle
	// exists, so the agent asks again at once instead of every pollSeconds.
	LongPoll bool
	Took     time.Duration // how long the request took (held, when LongPoll)
}

// Poll asks the backend once for the group's bundle and applies it when
// it is new. An unchanged bundle costs one request answered 304 and no
// store write. A refused bundle is audited once; its ETag is remembered so
// the same bytes are not fetched again, and its digest, so that a backend
// without ETags (a plain file server) does not have them refused and
// audited again on every poll. The error is for
// failures worth backing off for (network, backend, store).
func (s *Sync) Poll(ctx context.Context) (res PollResult, err error) {
	start := time.Now()
	longPolled := false
	defer func() { res.LongPoll, res.Took = longPolled, time.Since(start) }()
	ep, err := s.endpoint()
	if err != nil {
		return PollResult{}, err
	}
	client, err := s.httpClient(ep)
	if err != nil {
		return PollResult{}, err
	}
	u := ep.url + "/agents/" + ep.agentID() + "/bundle"
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return PollResult{}, err
	}
	ep.authorize(req)
	req.Header.Set(GroupHeader, ep.group)
	stamp := s.p.stamp()
	s.mu.Lock()
	if s.refusedErr != nil && s.refusedStamp != stamp {
		// What was refused may pass now (a key added to trust/, a new
		// generation): fetch and check it again.
		s.etag, s.refusedErr = "", nil
	}
	if s.etagURL == u && s.etag != "" {
		req.Header.Set("If-None-Match", s.etag)
	}
	s.mu.Unlock()
	if ep.longPoll > 0 {
		// RFC 7240, as OPA's bundle service long polling: a backend that
		// supports it holds a request whose If-None-Match is current until
		// the bundle changes or N seconds pass, and says so with
		// Preference-Applied (on every answer, so the first one tells).
		req.Header.Set("Prefer", "wait="+strconv.Itoa(int(ep.longPoll/time.Second)))
	}
	resp, err := client.Do(req)
	if err == nil {
		longPolled = strings.HasPrefix(resp.Header.Get("Preference-Applied"), "wait=")
	}
	if err != nil {
		return PollResult{}, fmt.Errorf("poll %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotModified:
		io.Copy(io.Discard, resp.Body)
		return PollResult{Status: "unchanged"}, nil
	case http.StatusNotFound:
		io.Copy(io.Discard, resp.Body)
		s.remember("", "")
		return PollResult{Status: "none"}, nil
	case http.StatusOK:
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return PollResult{}, fmt.Errorf("poll %s: backend answered %s: %s", u, resp.Status, bytes.TrimSpace(msg))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxUncompressed+1))
	if err != nil {
		return PollResult{}, fmt.Errorf("poll %s: %w", u, err)
	}
	etag := resp.Header.Get("ETag")
	if sameVersion(data, s.store.Current().Meta.BundleVersion) {
		// Already applied (the agent restarted, so it had no ETag): not a
		// rollback attempt, nothing to audit.
		s.remember(u, etag)
		return PollResult{Status: "unchanged"}, nil
	}
	sum := sha256.Sum256(data)
	if err := s.refusedBefore(sum, stamp); err != nil {
		s.remember(u, etag)
		return PollResult{Status: "refused", Err: err}, nil
	}
	m, err := s.p.Apply(ctx, data, "backend")
	switch {
	case err == nil:
		s.remember(u, etag)
		s.mu.Lock()
		s.refusedErr = nil
		s.mu.Unlock()
		return PollResult{Status: "applied", Meta: m}, nil
	case Refused(err):
		s.remember(u, etag)
		s.mu.Lock()
		s.refused, s.refusedErr, s.refusedStamp = sum, err, stamp
		s.mu.Unlock()
		return PollResult{Status: "refused", Err: err}, nil
	default:
		return PollResult{}, err
	}
}

// refusedBefore returns the refusal of the bundle with digest sum when it
// is the one refused last (already audited), else nil.
func (s *Sync) refusedBefore(sum [sha256.Size]byte, stamp string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refusedErr != nil && s.refused == sum && s.refusedStamp == stamp {
		return s.refusedErr
	}
	return nil
}

func (s *Sync) remember(u, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.etagURL, s.etag = u, etag
}

// sameVersion reports whether data's manifest (unverified) has version v.
// It only ever lets Poll skip work, never apply anything.
func sameVersion(data []byte, v int64) bool {
	if v == 0 {
		return false
	}
	b, err := ReadBundle(bytes.NewReader(data))
	if err != nil || b.Manifest == nil {
		return false
	}
	var m struct {
		Version int64 `json:"version"`
	}
	return json.Unmarshal(b.Manifest, &m) == nil && m.Version == v
}

// Run polls and uploads until ctx ends, then returns nil. Failures back
// off exponentially with jitter, from one second up to the poll interval,
// and recover on their own when the backend is back. With no backend
// configured it waits for Settings (or a registration) to name one.
func (s *Sync) Run(ctx context.Context) error {
	gens, cancel := s.store.Subscribe()
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.uploadLoop(ctx)
	}()
	defer wg.Wait()
	// The first poll waits a random part of the jitter window, so a fleet
	// started (or restarted) together does not poll in step.
	if ep, err := s.endpoint(); err == nil && !s.waitFor(ctx, gens, rand.N(min(ep.poll/jitterFraction, maxFirstOffset)+1)) {
		return nil
	}
	failures := 0
	for {
		res, err := s.Poll(ctx)
		wait := time.Minute
		if ep, eerr := s.endpoint(); eerr == nil {
			wait = ep.poll
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrNoBackend):
			failures = 0
		case err != nil:
			failures++
			if s.maxBackoff > 0 {
				wait = min(wait, s.maxBackoff)
			}
			wait = jitter(s.minBackoff, wait, failures-1)
			s.log.Warn("backend poll failed", "err", err, "retryIn", wait.Round(time.Millisecond).String())
		default:
			if failures > 0 {
				s.log.Info("backend reachable again", "after", failures)
			}
			failures = 0
			s.log.Debug("backend polled", "status", res.Status, "longPoll", res.LongPoll, "took", res.Took.Round(time.Millisecond).String())
			wait = nextPoll(res, wait)
		}
		if !s.waitFor(ctx, gens, wait) {
			return nil
		}
	}
}

// waitFor sleeps d, or less when the backend configuration changes (a new
// Settings document or registration). It reports false when ctx ended.
func (s *Sync) waitFor(ctx context.Context, gens <-chan uint64, d time.Duration) bool {
	before, _ := s.endpoint()
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case _, ok := <-gens:
			if !ok {
				gens = nil
				continue
			}
			if after, _ := s.endpoint(); !sameEndpoint(before, after) {
				return true
			}
		}
	}
}

func sameEndpoint(a, b *endpoint) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.url == b.url && a.caFile == b.caFile && a.group == b.group && a.poll == b.poll && a.longPoll == b.longPoll
}

// jitterFraction: polls are spread by ±poll/jitterFraction (±10%), and
// the first one waits up to poll/jitterFraction.
const jitterFraction = 10

// maxFirstOffset caps the first poll's random offset, so an agent with a
// long poll interval is not kept from its backend for long after a start.
const maxFirstOffset = 30 * time.Second

// longPollRetry is the pause after a long poll the backend answered
// quickly without a change, so a backend that claims to hold requests and
// does not is asked at most once a second.
const longPollRetry = time.Second

// nextPoll is the wait before the next poll after a successful one: at
// once when the backend holds requests (long polling), else the interval
// with jitter. A static host ignores the Prefer header, so the agent is
// back to interval polling by itself.
func nextPoll(res PollResult, interval time.Duration) time.Duration {
	switch {
	case res.LongPoll && (res.Status == "applied" || res.Took >= longPollRetry):
		return 0
	case res.LongPoll && res.Status == "unchanged":
		return longPollRetry
	}
	spread := interval / jitterFraction
	return interval - spread + rand.N(2*spread+1)
}
