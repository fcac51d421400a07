package source

import "errors"

// Reasons a bundle is refused. Every refusal wraps one of them, with the
// file (and field, for documents) it concerns.
var (
	// Reading the archive.
	ErrNotGzip      = errors.New("not a gzip file")
	ErrTruncated    = errors.New("truncated archive")
	ErrCorrupt      = errors.New("corrupt archive")
	ErrUnsafePath   = errors.New("unsafe path")
	ErrEntryType    = errors.New("entry is not a regular file or folder (links and devices are refused)")
	ErrTooManyFiles = errors.New("too many entries")
	ErrEntryTooBig  = errors.New("entry too large")
	ErrTooBig       = errors.New("bundle too large")
	ErrDuplicate    = errors.New("duplicate entry")
	ErrNotRegular   = errors.New("not a regular file (a symlink, FIFO, socket, device or folder is not a bundle)")

	// Verifying it.
	ErrUnsigned     = errors.New("bundle is not signed")
	ErrBadManifest  = errors.New("invalid manifest")
	ErrBadSignature = errors.New("signature does not verify")
	ErrUntrustedKey = errors.New("key not trusted")
	ErrUnlisted     = errors.New("file not listed in the manifest")
	ErrMissing      = errors.New("listed file missing from the bundle")
	ErrHashMismatch = errors.New("hash does not match the manifest")
	ErrLayout       = errors.New("file has no place in a bundle")
	ErrExpired      = errors.New("bundle expired")
	ErrInvalid      = errors.New("invalid document")

	// Applying it.
	ErrRollback = errors.New("version not above the applied one")
)

// incomplete reports whether err is what a half-written file looks like:
// the inbox waits for such a file to settle before refusing it.
func incomplete(err error) bool {
	return errors.Is(err, ErrTruncated) || errors.Is(err, ErrNotGzip)
}
