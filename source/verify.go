package source

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
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
// files, when not nil, are the files of b with their SHA-256 (readHashed,
// which hashes them as it reads); nil hashes them here. checked, when not
// nil, is where the policy check starts from and leaves what it compiled.
func (v *Verified) check(ctx context.Context, b *Bundle, now time.Time, files []hashedFile, checked **policy.Checked) error {
	start := time.Now()
	if files == nil {
		files = hashAll(b)
	}
	files, err := checkFiles(files, v.Manifest)
	if err != nil {
		return err
	}
	v.Timings.Hash = time.Since(start)
	if err := checkExpiry(v.Manifest, now); err != nil {
		return err
	}
	start = time.Now()
	docs, errs := validateFiles(ctx, files)
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

// hashedFile is a file of a bundle with its SHA-256.
type hashedFile struct {
	path string
	data []byte
	sum  [32]byte
}

func byPath(a, b hashedFile) int { return strings.Compare(a.path, b.path) }

// checkFiles compares the bundle's files with the manifest: every file
// listed, with the right SHA-256, in a place a document can be, and
// nothing unlisted. It reports every problem found. It returns the files
// sorted by path: every byte that is validated or answered from the cache
// was hashed here, against the signed manifest. Files in the manifest's
// order (as `warden bundle build` writes them) are compared pairwise,
// without looking each up.
func checkFiles(files []hashedFile, m *schema.Manifest) ([]hashedFile, error) {
	sorted := files
	if !slices.IsSortedFunc(files, byPath) {
		sorted = slices.Clone(files)
		slices.SortFunc(sorted, byPath)
	}
	var errs []error
	inOrder := len(files) == len(m.Files)
	for i := 0; inOrder && i < len(files); i++ {
		inOrder = files[i].path == m.Files[i].Path
	}
	var listed map[string]bool // nil when in order: every file listed once
	if inOrder {
		for i, f := range m.Files {
			if err := hashErr(f, files[i].sum); err != nil {
				errs = append(errs, err)
			}
		}
	} else {
		at := make(map[string]int, len(files))
		for i, f := range files {
			at[f.path] = i
		}
		listed = make(map[string]bool, len(m.Files))
		for _, f := range m.Files {
			if listed[f.Path] {
				errs = append(errs, fmt.Errorf("%s: %w in the manifest", f.Path, ErrDuplicate))
				continue
			}
			listed[f.Path] = true
			i, ok := at[f.Path]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: %w", f.Path, ErrMissing))
				continue
			}
			if err := hashErr(f, files[i].sum); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, f := range sorted {
		if listed != nil && !listed[f.path] {
			errs = append(errs, fmt.Errorf("%s: %w", f.path, ErrUnlisted))
		} else if _, _, err := placeOf(f.path); err != nil {
			errs = append(errs, err)
		}
	}
	return sorted, errors.Join(errs...)
}

// hashErr compares a file's SHA-256 with its manifest entry (lower-case
// hex, as parseManifest requires), without allocating.
func hashErr(f schema.ManifestFile, sum [32]byte) error {
	var got [64]byte
	hex.Encode(got[:], sum[:])
	if string(got[:]) != f.SHA256 {
		return fmt.Errorf("%s: %w (sha256 %s, manifest says %s)", f.Path, ErrHashMismatch, got[:], f.SHA256)
	}
	return nil
}

// hashAll returns the files of b with their SHA-256, sorted by path.
func hashAll(b *Bundle) []hashedFile {
	out := make([]hashedFile, 0, len(b.Files))
	for _, p := range b.Paths() {
		out = append(out, hashedFile{path: p, data: b.Files[p], sum: sha256.Sum256(b.Files[p])})
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
// document its path says it is (validateFiles), by the SHA-256 in sums (a
// file without one is hashed again).
func validateDocuments(ctx context.Context, b *Bundle, paths []string, sums map[string][32]byte) (docs []*schema.Document, errs schema.Errors) {
	files := make([]hashedFile, 0, len(paths))
	for _, p := range paths {
		if _, _, err := placeOf(p); err != nil {
			errs = append(errs, schema.Issue{File: p, Msg: err.Error()})
			continue
		}
		files = append(files, hashedFile{path: p, data: b.Files[p], sum: sums[p]})
	}
	docs, more := validateFiles(ctx, files)
	if errs = append(errs, more...); len(errs) > 0 {
		sort.SliceStable(errs, func(i, j int) bool { return errs[i].File < errs[j].File })
		return nil, errs
	}
	return docs, nil
}

// validateFiles validates files (sorted by path, each in a place a
// document can be: checkFiles) as the documents their paths say they are,
// on all cores. Unchanged documents cost a cache lookup (schema.Validate
// caches by content hash), by their SHA-256 (a file without one is hashed
// again). The documents come back in path order; errs lists every issue,
// sorted by file.
func validateFiles(ctx context.Context, files []hashedFile) (docs []*schema.Document, errs schema.Errors) {
	in := make([]schema.File, len(files))
	for i, f := range files {
		in[i] = schema.File{Name: f.path, Data: f.data, Sum: f.sum}
	}
	// On cancellation the answers are partial; check returns ctx.Err().
	each, failed, _ := schema.ValidateEach(ctx, in)
	docs = make([]*schema.Document, 0, len(in))
	for i, err := range failed {
		var se schema.Errors
		switch {
		case errors.As(err, &se):
			errs = append(errs, se...)
		case err != nil:
			errs = append(errs, schema.Issue{File: in[i].Name, Msg: err.Error()})
		case each[i] != nil:
			errs = append(errs, checkPlace(in[i].Name, each[i])...)
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
	files, err := checkFiles(hashAll(b), m)
	if err != nil {
		return nil, err
	}
	docs, errs := validateFiles(context.Background(), files)
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
