package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"warden/audit"
	"warden/policy"
	"warden/state"
)

// Pipeline is the one way a bundle becomes desired state, whatever its
// source: read, verify (signature, files, expiry), validate every
// document, then apply the whole bundle as the next generation in one
// store transaction, refusing a version not above the applied one inside
// that transaction. Every outcome is audited: BUNDLE_APPLIED, or
// BUNDLE_REJECTED with a reason naming the file (and field). A Pipeline
// is safe for concurrent use; applies run one at a time.
type Pipeline struct {
	store    *state.Store
	audit    *audit.Writer
	trustDir string

	// Logger receives one Info line per applied bundle and one Warn line per
	// refusal. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock expiry is checked against. Default time.Now.
	Now func() time.Time

	mu sync.Mutex
	// checked is what the last bundle's policy check compiled (under mu):
	// the next one starts from it.
	checked *policy.Checked
}

// NewPipeline applies bundles to store, trusting the keys in trustDir (read
// at every apply, so a key added there counts at once) and those pinned by
// the applied Settings' alternativeSignatures, and audits through aw.
func NewPipeline(store *state.Store, aw *audit.Writer, trustDir string) *Pipeline {
	return &Pipeline{store: store, audit: aw, trustDir: trustDir}
}

// Apply verifies, validates and applies one bundle (the bytes of a .tar.gz)
// and returns the new generation's meta. origin names where it came from
// ("bundle:NAME" for the inbox, "backend" for sync) and is recorded in the
// generation and the audit event. When the bundle is refused, the error
// satisfies Refused and the applied state is untouched. An error that does
// not satisfy Refused (store closed, context ended) says nothing about the
// bundle and is not audited as a refusal.
func (p *Pipeline) Apply(ctx context.Context, bundle []byte, origin string) (state.Meta, error) {
	m, _, err := p.ApplyTimed(ctx, bundle, origin)
	return m, err
}

// ApplyTimed is Apply, also returning where the time went.
func (p *Pipeline) ApplyTimed(ctx context.Context, bundle []byte, origin string) (state.Meta, Timings, error) {
	return p.applyUnless(ctx, bundle, origin, nil)
}

// applyUnless is ApplyTimed, except that a refusal for which hold returns
// true is returned as it is, neither audited nor logged: the inbox holds a
// file that looks half-written until it has settled, and reads it once.
func (p *Pipeline) applyUnless(ctx context.Context, bundle []byte, origin string, hold func(error) bool) (state.Meta, Timings, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sum := sha256.Sum256(bundle)
	digest := hex.EncodeToString(sum[:])
	meta, v, err := p.apply(ctx, bundle, origin, digest)
	var t Timings
	if v != nil {
		t = v.Timings
	}
	if err != nil {
		if hold != nil && hold(err) {
			return state.Meta{}, t, err
		}
		if Refused(err) {
			p.rejected(ctx, origin, digest, v, err)
		} else {
			p.logger().Error("bundle not applied", "origin", origin, "err", err)
		}
		return state.Meta{}, t, err
	}
	p.logApplied(origin, v, meta)
	return meta, t, nil
}

// apply returns the verified bundle (as far as it got) with any error.
func (p *Pipeline) apply(ctx context.Context, data []byte, origin, digest string) (state.Meta, *Verified, error) {
	start := time.Now()
	trust, trustErr := LoadTrust(p.trustDir)
	cur := p.store.Current()
	if trustErr == nil {
		trust.Pin(cur.Settings().AlternativeSignatures...)
	}
	// The signature is checked on another core as soon as the reader has
	// the envelope (what bundle build writes first); the files are hashed
	// on another as they are read, and compared with the manifest only
	// once it is trusted.
	var early chan signed
	var env Bundle
	onEnvelope := func(e Bundle) {
		if trustErr != nil {
			return
		}
		env, early = e, make(chan signed, 1)
		go func() {
			v, err := verifySignature(&e, trust)
			early <- signed{v, err}
		}()
	}
	b, files, err := readHashed(data, onEnvelope)
	read := time.Since(start)
	if err != nil {
		return state.Meta{}, nil, err
	}
	if trustErr != nil {
		return state.Meta{}, nil, trustErr
	}
	var v *Verified
	if early != nil {
		s := <-early
		v, err = s.v, s.err
	}
	if early == nil || !sameEnvelope(&env, b) {
		v, err = verifySignature(b, trust)
	}
	if err != nil {
		return state.Meta{}, nil, err
	}
	v.Timings.Read = read
	// Refuse a rollback before the expensive part; the same check runs
	// again inside the transaction, where it is authoritative.
	if err := notNewer(v.Manifest.Version, cur.Meta); err != nil {
		return state.Meta{}, v, err
	}
	if err := v.check(ctx, b, p.now(), files, &p.checked); err != nil {
		return state.Meta{}, v, err
	}
	start = time.Now()
	meta, err := p.commit(state.Apply{
		BundleVersion: v.Manifest.Version,
		Source:        origin,
		Docs:          v.Docs,
		Check:         func(cur state.Meta) error { return notNewer(v.Manifest.Version, cur) },
	}, nil, func(m state.Meta) audit.Event { return appliedEvent(origin, digest, v, m) })
	v.Timings.Commit = time.Since(start)
	return meta, v, err
}

// signed is verifySignature's answer.
type signed struct {
	v   *Verified
	err error
}

// sameEnvelope reports whether b's manifest, signature and signer are
// those of e (the signature check of e is then b's).
func sameEnvelope(e, b *Bundle) bool {
	same := func(x, y []byte) bool { return (x == nil) == (y == nil) && bytes.Equal(x, y) }
	return same(e.Manifest, b.Manifest) && same(e.Signature, b.Signature) && same(e.Signer, b.Signer)
}

// commit applies a as the next generation with its audit events in the
// same transaction (audit.Writer.ApplyGeneration): nothing committed is
// unaudited.
func (p *Pipeline) commit(a state.Apply, ui *audit.UserInfo, event func(state.Meta) audit.Event) (state.Meta, error) {
	if p.audit == nil {
		return p.store.ApplyGeneration(a)
	}
	return p.audit.ApplyGeneration(a, ui, func(m state.Meta) []audit.Event { return []audit.Event{event(m)} })
}

func notNewer(version int64, cur state.Meta) error {
	if version <= cur.BundleVersion {
		return fmt.Errorf("%s: version: %w (bundle version %d, applied version %d)", ManifestFile, ErrRollback, version, cur.BundleVersion)
	}
	return nil
}

func (p *Pipeline) logApplied(origin string, v *Verified, m state.Meta) {
	t := v.Timings
	p.logger().Info("bundle applied", "origin", origin, "version", m.BundleVersion, "generation", m.Generation,
		"documents", m.Documents, "keyId", v.KeyID, "ms", t.Total().Milliseconds(),
		"readMs", ms(t.Read), "hashMs", ms(t.Hash), "verifyMs", ms(t.Verify), "validateMs", ms(t.Validate), "commitMs", ms(t.Commit))
}

// appliedEvent is BUNDLE_APPLIED, built inside the commit (which it is part
// of, so its timings stop before the commit).
func appliedEvent(origin, digest string, v *Verified, m state.Meta) audit.Event {
	t := v.Timings
	return audit.Event{Type: audit.BundleApplied, Severity: audit.Info, Component: "source",
		TargetInfo: &audit.TargetInfo{Kind: "Bundle", ID: strconv.FormatInt(m.BundleVersion, 10), Path: origin, Hash: digest},
		Details: map[string]any{
			"origin": origin, "version": m.BundleVersion, "generation": m.Generation, "documents": m.Documents,
			"keyId": v.KeyID, "trustedBy": v.TrustedBy, "created": v.Manifest.Created,
			"timingsMs": map[string]float64{"read": ms(t.Read), "hash": ms(t.Hash), "verify": ms(t.Verify),
				"validate": ms(t.Validate)},
		}}
}

// refuse audits a bundle refused before it could be read whole (too
// large for the pipeline to take in).
func (p *Pipeline) refuse(ctx context.Context, origin string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rejected(ctx, origin, "", nil, err)
}

func (p *Pipeline) rejected(ctx context.Context, origin, digest string, v *Verified, err error) {
	reason := Reason(err)
	p.logger().Warn("bundle rejected", "origin", origin, "reason", reason)
	details := map[string]any{"origin": origin, "reason": reason, "kind": RejectKind(err)}
	target := &audit.TargetInfo{Kind: "Bundle", Path: origin, Hash: digest}
	if v != nil {
		details["version"] = v.Manifest.Version
		details["keyId"] = v.KeyID
		target.ID = strconv.FormatInt(v.Manifest.Version, 10)
	}
	if all := issueList(err); len(all) > 0 {
		if len(all) > maxAuditIssues {
			all = append(all[:maxAuditIssues:maxAuditIssues], fmt.Sprintf("and %d more", len(all)-maxAuditIssues))
		}
		details["issues"] = all
	}
	p.emit(ctx, audit.Event{Type: audit.BundleRejected, Severity: audit.Warning, Component: "source",
		TargetInfo: target, Details: details})
}

func (p *Pipeline) emit(ctx context.Context, e audit.Event) {
	if p.audit == nil {
		return
	}
	// Record the outcome even when ctx just ended: the state change (or
	// refusal) happened and must not go unaudited.
	if _, err := p.audit.Write(context.WithoutCancel(ctx), e); err != nil {
		p.logger().Error("audit event not recorded", "type", e.Type, "err", err)
	}
}

func (p *Pipeline) logger() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

func (p *Pipeline) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// refusals are the reasons a bundle itself is refused.
var refusals = []error{ErrNotGzip, ErrTruncated, ErrCorrupt, ErrUnsafePath, ErrEntryType, ErrTooManyFiles,
	ErrEntryTooBig, ErrTooBig, ErrDuplicate, ErrNotRegular, ErrUnsigned, ErrBadManifest, ErrBadSignature, ErrUntrustedKey,
	ErrUnlisted, ErrMissing, ErrHashMismatch, ErrLayout, ErrExpired, ErrInvalid, ErrRollback}

// Refused reports whether err refuses a bundle for what it is (as opposed
// to a failure of the agent: store, disk, shutdown).
func Refused(err error) bool {
	for _, r := range refusals {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// maxReasonIssues bounds how many problems a one-line reason names.
const maxReasonIssues = 5

// maxAuditIssues bounds the issues listed in one BUNDLE_REJECTED event.
const maxAuditIssues = 100

// Reason renders a refusal as one line, naming the file and field of the
// first few problems and counting the rest.
func Reason(err error) string {
	lines := issueList(err)
	if len(lines) == 0 {
		lines = strings.Split(strings.TrimSpace(err.Error()), "\n")
	}
	more := len(lines) - maxReasonIssues
	if more > 0 {
		lines = append(lines[:maxReasonIssues:maxReasonIssues], fmt.Sprintf("and %d more", more))
	}
	return strings.Join(lines, "; ")
}

// issueList returns one line per problem: every document issue of an
// InvalidError, or every joined error.
func issueList(err error) []string {
	var ie *InvalidError
	if errors.As(err, &ie) {
		out := make([]string, len(ie.Errors))
		for i, is := range ie.Errors {
			out[i] = is.String()
		}
		return out
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok && len(j.Unwrap()) > 1 {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, strings.ReplaceAll(e.Error(), "\n", "; "))
		}
		return out
	}
	return nil
}

// stamp changes whenever a bundle refused before might pass now: a key
// added to or removed from trust/, other alternativeSignatures, a new
// generation. Sync keeps it with a refused bundle's digest.
func (p *Pipeline) stamp() string {
	h := sha256.New()
	if t, err := LoadTrust(p.trustDir); err == nil {
		for _, id := range t.KeyIDs() {
			h.Write([]byte(id + "\n"))
		}
	}
	cur := p.store.Current()
	for _, tp := range cur.Settings().AlternativeSignatures {
		h.Write([]byte("pin " + tp + "\n"))
	}
	fmt.Fprintf(h, "gen %d\n", cur.Meta.Generation)
	return hex.EncodeToString(h.Sum(nil))
}
