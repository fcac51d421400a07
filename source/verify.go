package source

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"

	"warden/policy"
	"warden/schema"
)

// Verified is a bundle that passed every check: its manifest, the key that
// signed it, how that key is trusted, and its documents, validated.
type Verified struct {
	Manifest  *schema.Manifest
	KeyID     string
	TrustedBy string // "trust" (trust/ or --pub) or "alternativeSignatures"
	Docs      []*schema.Document
	Timings   Timings
}

// Timings splits the cost of taking in a bundle.
type Timings struct {
	Read     time.Duration // gunzip and untar
	Hash     time.Duration // file listing and SHA-256 of every file
	Verify   time.Duration // manifest and Ed25519 signature
	Validate time.Duration // every document against its schema
	Commit   time.Duration // the store transaction
}

// Total is the sum of the parts.
func (t Timings) Total() time.Duration { return t.Read + t.Hash + t.Verify + t.Validate + t.Commit }

// Verify runs every check a bundle must pass before it is applied, except
// the version check, which needs the store: the signature by a trusted key,
// the file listing and hashes, expiry at now, and every document (all
// invalid documents are reported, not only the first).
func Verify(ctx context.Context, b *Bundle, t *Trust, now time.Time) (*Verified, error) {
	v, err := verifySignature(b, t)
	if err != nil {
		return nil, err
	}
	if err := v.check(ctx, b, now, nil, nil); err != nil {
		return nil, err
	}
	return v, nil
}

// verifySignature checks the manifest and its signature: the cheap checks
// that come before any work proportional to the bundle's size.
func verifySignature(b *Bundle, t *Trust) (*Verified, error) {
	start := time.Now()
	if b.Manifest == nil {
		return nil, fmt.Errorf("%w: no %s", ErrUnsigned, ManifestFile)
	}
	if b.Signature == nil {
		return nil, fmt.Errorf("%w: no %s", ErrUnsigned, SignatureFile)
	}
	m, err := parseManifest(b.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadManifest, err)
	}
	key, how, err := t.lookup(m.KeyID, b.Signer)
	if err != nil {
		return nil, err
	}
	if len(b.Signature) != ed25519.SignatureSize || !ed25519.Verify(key, b.Manifest, b.Signature) {
		return nil, fmt.Errorf("%s: %w with key %s", SignatureFile, ErrBadSignature, m.KeyID)
	}
	v := &Verified{Manifest: m, KeyID: m.KeyID, TrustedBy: how}
	v.Timings.Verify = time.Since(start)
	return v, nil
}

// check runs the checks after the signature: files, expiry, documents.
// hashed, when not nil, delivers the SHA-256 of every file of b
// (hashFiles, started beside the signature check); nil hashes them here.
func (v *Verified) check(ctx context.Context, b *Bundle, now time.Time, hashed <-chan map[string][32]byte, checked **policy.Checked) error {
	start := time.Now()
	paths := b.Paths()
	var all map[string][32]byte
	if hashed != nil {
		all = <-hashed
	} else {
		all = hashFiles(b)
	}
	sums, err := checkFiles(b, paths, v.Manifest, all)
	if err != nil {
		return err
	}
	v.Timings.Hash = time.Since(start)
	if err := checkExpiry(v.Manifest, now); err != nil {
		return err
	}
	start = time.Now()
	docs, errs := validateDocuments(ctx, b, paths, sums)
	v.Timings.Validate = time.Since(start)
	if err := ctx.Err(); err != nil {
		// The workers stopped early: docs has gaps (nil) and errs is partial.
		return err
	}
	if errs != nil {
		return &InvalidError{Errors: errs}
	}
	if errs := v.compile(docs, checked); errs != nil {
		return &InvalidError{Errors: errs}
	}
	v.Docs = docs
	return ctx.Err()
}

// compile is CompilePolicies, starting from *checked (when not nil) and
// leaving there what it compiled.
func (v *Verified) compile(docs []*schema.Document, checked **policy.Checked) schema.Errors {
	if checked == nil {
		return CompilePolicies(docs)
	}
	c, err := policy.CheckFrom(*checked, policiesOf(docs))
	if err != nil {
		return policyErrors(err)
	}
	*checked = c
	return nil
}

// checkFiles compares the bundle's files with the manifest: every file
// listed, with the right SHA-256, in a place a document can be, and
// nothing unlisted. It reports every problem found. It returns the SHA-256
// of every file, which validation uses (every byte that is validated or
// answered from the cache was hashed here, against the signed manifest).
func checkFiles(b *Bundle, paths []string, m *schema.Manifest, all map[string][32]byte) (map[string][32]byte, error) {
	var errs []error
	listed := make(map[string]bool, len(m.Files))
	sums := make(map[string][32]byte, len(m.Files))
	for _, f := range m.Files {
		if listed[f.Path] {
			errs = append(errs, fmt.Errorf("%s: %w in the manifest", f.Path, ErrDuplicate))
			continue
		}
		listed[f.Path] = true
		sum, ok := all[f.Path]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %w", f.Path, ErrMissing))
			continue
		}
		var want [32]byte
		if n, err := hex.Decode(want[:], []byte(f.SHA256)); err != nil || n != len(want) || sum != want {
			errs = append(errs, fmt.Errorf("%s: %w (sha256 %s, manifest says %s)", f.Path, ErrHashMismatch, hex.EncodeToString(sum[:]), f.SHA256))
			continue
		}
		sums[f.Path] = sum
	}
	for _, p := range paths {
		if !listed[p] {
			errs = append(errs, fmt.Errorf("%s: %w", p, ErrUnlisted))
		} else if _, _, err := placeOf(p); err != nil {
			errs = append(errs, err)
		}
	}
	return sums, errors.Join(errs...)
}

// hashFiles returns the SHA-256 of every file of b, by path.
func hashFiles(b *Bundle) map[string][32]byte {
	out := make(map[string][32]byte, len(b.Files))
	for p, data := range b.Files {
		out[p] = sha256.Sum256(data)
	}
	return out
}

func checkExpiry(m *schema.Manifest, now time.Time) error {
	if m.Expires == "" {
		return nil
	}
	exp, err := time.Parse(time.RFC3339, m.Expires)
	if err != nil {
		return fmt.Errorf("%w: %s: expires: %v", ErrBadManifest, ManifestFile, err)
	}
	if !now.Before(exp) {
		return fmt.Errorf("%s: expires: %w at %s", ManifestFile, ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	return nil
}

// InvalidError is the refusal of a bundle whose documents do not validate.
// Errors lists every broken rule of every document ("file: field: rule").
type InvalidError struct {
	Errors schema.Errors
}

func (e *InvalidError) Error() string { return e.Errors.Error() }

// Unwrap makes errors.Is(err, ErrInvalid) and errors.As(err, &schema.Errors{}) hold.
func (e *InvalidError) Unwrap() []error { return []error{ErrInvalid, e.Errors} }

// validateDocuments validates every file of b (paths, sorted) as the
// document its path says it is, on all cores. Unchanged documents cost a cache lookup
// (schema.Validate caches by content hash), by the SHA-256 in sums
// (checkFiles'; a file without one is hashed again). The documents come
// back in path order; errs lists every issue, sorted by file.
func validateDocuments(ctx context.Context, b *Bundle, paths []string, sums map[string][32]byte) (docs []*schema.Document, errs schema.Errors) {
	files := make([]schema.File, 0, len(paths))
	for _, p := range paths {
		if _, _, err := placeOf(p); err != nil {
			errs = append(errs, schema.Issue{File: p, Msg: err.Error()})
			continue
		}
		files = append(files, schema.File{Name: p, Data: b.Files[p], Sum: sums[p]})
	}
	// On cancellation the answers are partial; check returns ctx.Err().
	each, failed, _ := schema.ValidateEach(ctx, files)
	for i, err := range failed {
		var se schema.Errors
		switch {
		case errors.As(err, &se):
			errs = append(errs, se...)
		case err != nil:
			errs = append(errs, schema.Issue{File: files[i].Name, Msg: err.Error()})
		case each[i] != nil:
			errs = append(errs, checkPlace(files[i].Name, each[i])...)
			docs = append(docs, each[i])
		}
	}
	if len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].File < errs[j].File })
		return nil, errs
	}
	return docs, nil
}

// ValidateBundleFile checks a bundle file without a key: it must read
// within the limits, its files must match its manifest (listing and
// hashes), and every document must validate. Invalid documents give an
// error of type schema.Errors listing all of them; other problems give the
// reader's or the listing's error. The signature is not checked.
func ValidateBundleFile(name string) ([]*schema.Document, error) {
	b, err := ReadBundleFile(name)
	if err != nil {
		return nil, err
	}
	if b.Manifest == nil {
		return nil, fmt.Errorf("%w: no %s", ErrUnsigned, ManifestFile)
	}
	m, err := parseManifest(b.Manifest)
	if err != nil {
		return nil, err
	}
	paths := b.Paths()
	sums, err := checkFiles(b, paths, m, hashFiles(b))
	if err != nil {
		return nil, err
	}
	docs, errs := validateDocuments(context.Background(), b, paths, sums)
	if errs != nil {
		return nil, errs
	}
	if errs := CompilePolicies(docs); errs != nil {
		return nil, errs
	}
	return docs, nil
}

// CompilePolicies compiles the policies among docs as the engine will when
// they are applied (policy.Check: Compile's errors, without building the
// index): a generation the engine cannot load must not replace the one in
// force. It returns the broken rules (time windows it cannot
// read, unknown variables, duplicate ids, ...), each naming the policy's
// file in the bundle layout, policies/ID.json.
func CompilePolicies(docs []*schema.Document) schema.Errors {
	if err := policy.Check(policiesOf(docs)); err != nil {
		return policyErrors(err)
	}
	return nil
}

func policiesOf(docs []*schema.Document) []*schema.Document {
	var policies []*schema.Document
	for _, d := range docs {
		if d.Kind == schema.KindPolicy {
			policies = append(policies, d)
		}
	}
	return policies
}

func policyErrors(err error) schema.Errors {
	var se schema.Errors
	if !errors.As(err, &se) {
		se = schema.Errors{{File: "policies/", Msg: err.Error()}}
	}
	return se
}
