package source

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// Limits of the bundle reader. They stop hostile archives while reading,
// before the bytes are held: a gzip bomb ends at MaxUncompressed bytes of
// output, not after it has filled memory.
const (
	MaxFiles        = 10_000   // files besides manifest.json, manifest.sig, manifest.pub
	MaxFolders      = 64       // folder entries (a bundle needs six)
	MaxEntrySize    = 1 << 20  // one file
	MaxUncompressed = 64 << 20 // the whole tar stream, headers included
)

// Names of the signature envelope at the root of a bundle. manifest.json
// lists every other file; manifest.sig is the raw 64-byte Ed25519
// signature over manifest.json's exact bytes; manifest.pub (optional) is
// the signer's public key, trusted only if Settings pins its thumbprint.
const (
	ManifestFile  = "manifest.json"
	SignatureFile = "manifest.sig"
	SignerFile    = "manifest.pub"
)

// Bundle is a bundle archive as read, not yet verified.
type Bundle struct {
	Manifest  []byte            // manifest.json, exact bytes
	Signature []byte            // manifest.sig
	Signer    []byte            // manifest.pub, or nil
	Files     map[string][]byte // every other file by its clean path
}

// Paths returns the paths of Files, sorted.
func (b *Bundle) Paths() []string {
	out := make([]string, 0, len(b.Files))
	for p := range b.Files {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// ReadBundleFile reads a bundle file with the limits of ReadBundle.
func ReadBundleFile(name string) (*Bundle, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadBundle(f)
}

// ReadBundle reads a .tar.gz bundle. It refuses absolute paths, "..",
// links, devices and other special entries, more than MaxFiles files, a
// file over MaxEntrySize, more than MaxUncompressed bytes of tar stream,
// duplicates, and anything that is not one complete gzip stream.
func ReadBundle(r io.Reader) (*Bundle, error) {
	zr, err := gzip.NewReader(bufio.NewReader(r))
	if err != nil {
		return nil, gzipErr(err)
	}
	lim := &limitReader{r: zr, n: MaxUncompressed}
	tr := tar.NewReader(lim)
	b := &Bundle{Files: map[string][]byte{}}
	files, folders := 0, 0
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, readErr(err)
		}
		name, err := cleanName(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if folders++; folders > MaxFolders {
				return nil, fmt.Errorf("%w: more than %d folders", ErrTooManyFiles, MaxFolders)
			}
			continue
		case tar.TypeXGlobalHeader:
			continue // metadata only (git archive writes one)
		case tar.TypeReg: // the reader reports old TypeRegA entries as TypeReg
		default:
			return nil, fmt.Errorf("%s: %w", hdr.Name, ErrEntryType)
		}
		if name == "" {
			return nil, fmt.Errorf("%q: %w", hdr.Name, ErrUnsafePath)
		}
		limit := int64(MaxEntrySize)
		if name == ManifestFile {
			limit = MaxManifestSize
		}
		if hdr.Size > limit {
			return nil, fmt.Errorf("%s: %w: %d bytes (at most %d)", name, ErrEntryTooBig, hdr.Size, limit)
		}
		envelope := name == ManifestFile || name == SignatureFile || name == SignerFile
		if !envelope {
			if files++; files > MaxFiles {
				return nil, fmt.Errorf("%w: more than %d files", ErrTooManyFiles, MaxFiles)
			}
		}
		data := make([]byte, hdr.Size)
		if _, err := io.ReadFull(tr, data); err != nil {
			return nil, fmt.Errorf("%s: %w", name, readErr(err))
		}
		if err := b.put(name, data); err != nil {
			return nil, err
		}
	}
	// Read to the end of the gzip stream: that checks its CRC and length,
	// and finds a file cut short after the tar trailer.
	if _, err := io.Copy(io.Discard, lim); err != nil {
		return nil, readErr(err)
	}
	return b, nil
}

func (b *Bundle) put(name string, data []byte) error {
	var slot *[]byte
	switch name {
	case ManifestFile:
		slot = &b.Manifest
	case SignatureFile:
		slot = &b.Signature
	case SignerFile:
		slot = &b.Signer
	}
	if slot != nil {
		if *slot != nil {
			return fmt.Errorf("%s: %w", name, ErrDuplicate)
		}
		*slot = data
		return nil
	}
	if _, dup := b.Files[name]; dup {
		return fmt.Errorf("%s: %w", name, ErrDuplicate)
	}
	b.Files[name] = data
	return nil
}

// cleanName turns an entry name into a clean relative path ("./a/b/" ->
// "a/b"; "." -> ""), refusing absolute paths and "..".
func cleanName(name string) (string, error) {
	if isPlainName(name) {
		return name, nil
	}
	return cleanNameSlow(name)
}

// cleanNameSlow is cleanName for any name.
func cleanNameSlow(name string) (string, error) {
	if strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%q: %w", name, ErrUnsafePath)
	}
	for _, part := range strings.Split(name, "/") {
		if part == ".." {
			return "", fmt.Errorf("%q: %w", name, ErrUnsafePath)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// limitReader fails with ErrTooBig once more than n bytes were read.
type limitReader struct {
	r    io.Reader
	n    int64
	read int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.read > l.n {
		return 0, ErrTooBig
	}
	if int64(len(p)) > l.n+1-l.read {
		p = p[:l.n+1-l.read]
	}
	n, err := l.r.Read(p)
	l.read += int64(n)
	if l.read > l.n {
		return n, fmt.Errorf("%w: more than %d bytes uncompressed", ErrTooBig, l.n)
	}
	return n, err
}

func gzipErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: empty file", ErrNotGzip)
		}
		return ErrTruncated
	}
	if errors.Is(err, gzip.ErrHeader) {
		return ErrNotGzip
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

func readErr(err error) error {
	switch {
	case errors.Is(err, ErrTooBig):
		return err
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return ErrTruncated
	case errors.Is(err, gzip.ErrChecksum), errors.Is(err, gzip.ErrHeader):
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

// IsBundle reports whether data starts like a gzip file, which is how
// `warden validate` tells a bundle from a document.
func IsBundle(data []byte) bool { return bytes.HasPrefix(data, []byte{0x1f, 0x8b}) }

// IsBundleFile reports whether the file at name starts like a gzip file.
func IsBundleFile(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	var magic [2]byte
	_, err = io.ReadFull(f, magic[:])
	return err == nil && IsBundle(magic[:])
}

// isPlainName reports whether name is already what cleanName makes of
// it: segments of anything but "/", "\\" and NUL, none empty, "." or "..".
func isPlainName(name string) bool {
	start := 0
	for i := 0; i <= len(name); i++ {
		if i < len(name) {
			if c := name[i]; c == '\\' || c == 0 {
				return false
			} else if c != '/' {
				continue
			}
		}
		if seg := name[start:i]; seg == "" || seg == "." || seg == ".." {
			return false
		}
		start = i + 1
	}
	return true
}
