package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"warden/schema"
)

// BuildOptions says what to sign.
type BuildOptions struct {
	Version int64
	// Created is the manifest's creation time. Zero means the newest
	// modification time among the input files, so rebuilding the same
	// files gives the same bytes. (The CLI also honours SOURCE_DATE_EPOCH.)
	Created time.Time
	// Expires, when not zero, is how long after Created the bundle expires.
	Expires time.Duration
	// Now is the clock used to refuse building an already expired bundle.
	Now func() time.Time
}

// Build signs the documents in dir into a bundle. Input is dir/settings.json
// and dir/{policies,approvers,plugins,jobs}/ID.json; dot files are skipped
// and anything else is an error. Every document must validate. The output
// depends only on the files' contents, the options and the key: entries
// are sorted, and tar and gzip headers carry fixed times, owners and
// modes, so a rebuild is byte-identical (with the same warden build: the
// gzip encoder is Go's).
func Build(dir string, key ed25519.PrivateKey, opts BuildOptions) ([]byte, *schema.Manifest, error) {
	if opts.Version < 1 {
		return nil, nil, fmt.Errorf("version must be 1 or more, not %d", opts.Version)
	}
	files, newest, err := collect(dir)
	if err != nil {
		return nil, nil, err
	}
	if _, errs := validateDocuments(context.Background(), &Bundle{Files: files}, (&Bundle{Files: files}).Paths(), nil); errs != nil {
		return nil, nil, &InvalidError{Errors: errs}
	}
	created := opts.Created
	if created.IsZero() {
		created = newest
	}
	created = created.UTC().Truncate(time.Second)
	pub := key.Public().(ed25519.PublicKey)
	m := &schema.Manifest{Version: opts.Version, Created: created.Format(time.RFC3339), KeyID: KeyID(pub)}
	if opts.Expires > 0 {
		exp := created.Add(opts.Expires)
		now := time.Now
		if opts.Now != nil {
			now = opts.Now
		}
		if !now().Before(exp) {
			return nil, nil, fmt.Errorf("the bundle would expire at %s, which is past (created is %s: set --created or SOURCE_DATE_EPOCH, or a longer --expires)",
				exp.Format(time.RFC3339), m.Created)
		}
		m.Expires = exp.Format(time.RFC3339)
	}
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	m.Files = make([]schema.ManifestFile, 0, len(paths))
	for _, p := range paths {
		sum := sha256.Sum256(files[p])
		m.Files = append(m.Files, schema.ManifestFile{Path: p, SHA256: hex.EncodeToString(sum[:])})
	}
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, nil, err
	}
	manifest = append(manifest, '\n')
	if _, err := parseManifest(manifest); err != nil {
		return nil, nil, err
	}
	entries := []entry{
		{ManifestFile, manifest},
		{SignatureFile, ed25519.Sign(key, manifest)},
		{SignerFile, EncodePublicKey(pub)},
	}
	for _, p := range paths {
		entries = append(entries, entry{p, files[p]})
	}
	out, err := writeArchive(entries, created)
	return out, m, err
}

type entry struct {
	name string
	data []byte
}

// writeArchive writes entries, in order, as a deterministic .tar.gz.
func writeArchive(entries []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	// gzip header: no name, no time (zero ModTime writes 0), OS "unknown".
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: e.name, Size: int64(len(e.data)),
			Mode: 0o644, ModTime: mtime, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("%s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// collect reads the documents below dir and the newest modification time
// among them.
func collect(dir string) (map[string][]byte, time.Time, error) {
	files := map[string][]byte{}
	var newest time.Time
	var bad []error
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if _, ok := folderKinds[rel]; !ok {
				bad = append(bad, fmt.Errorf("%s/: %w", rel, ErrLayout))
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			bad = append(bad, fmt.Errorf("%s: %w", rel, ErrEntryType))
			return nil
		}
		if _, _, err := placeOf(rel); err != nil {
			bad = append(bad, err)
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() > MaxEntrySize {
			bad = append(bad, fmt.Errorf("%s: %w", rel, ErrEntryTooBig))
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[rel] = data
		if info.ModTime().After(newest) {
			newest = info.ModTime()
		}
		return nil
	})
	if err != nil {
		return nil, time.Time{}, err
	}
	if len(bad) > 0 {
		return nil, time.Time{}, errors.Join(bad...)
	}
	if len(files) == 0 {
		return nil, time.Time{}, fmt.Errorf("%s: no documents", dir)
	}
	if len(files) > MaxFiles {
		return nil, time.Time{}, fmt.Errorf("%w: %d documents (at most %d)", ErrTooManyFiles, len(files), MaxFiles)
	}
	return files, newest, nil
}
