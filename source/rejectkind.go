package source

import "errors"

// RejectKind sorts a rejection error into the few kinds metrics and
// alerts use (warden_bundles_rejected_total{reason}): archive, signature,
// hash, expired, rollback, invalid or other. The full reason stays in the
// BUNDLE_REJECTED event.
func RejectKind(err error) string {
	switch {
	case err == nil:
		return "other"
	case errors.Is(err, ErrUnsigned), errors.Is(err, ErrBadSignature), errors.Is(err, ErrUntrustedKey), errors.Is(err, ErrBadManifest):
		return "signature"
	case errors.Is(err, ErrUnlisted), errors.Is(err, ErrMissing), errors.Is(err, ErrHashMismatch), errors.Is(err, ErrLayout):
		return "hash"
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, ErrRollback):
		return "rollback"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrNotGzip), errors.Is(err, ErrTruncated), errors.Is(err, ErrCorrupt), errors.Is(err, ErrUnsafePath),
		errors.Is(err, ErrEntryType), errors.Is(err, ErrTooManyFiles), errors.Is(err, ErrEntryTooBig), errors.Is(err, ErrTooBig),
		errors.Is(err, ErrDuplicate):
		return "archive"
	}
	var ie *InvalidError
	if errors.As(err, &ie) {
		return "invalid"
	}
	return "other"
}
