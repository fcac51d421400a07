package source

import (
	"fmt"
	"testing"
)

func TestRejectKind(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("manifest.sig: %w", ErrBadSignature), "signature"},
		{fmt.Errorf("key k1: %w", ErrUntrustedKey), "signature"},
		{fmt.Errorf("policies/a.json: %w", ErrHashMismatch), "hash"},
		{ErrExpired, "expired"},
		{fmt.Errorf("version 3: %w", ErrRollback), "rollback"},
		{fmt.Errorf("x: %w", ErrTruncated), "archive"},
		{&InvalidError{}, "invalid"},
		{fmt.Errorf("disk full"), "other"},
	} {
		if got := RejectKind(c.err); got != c.want {
			t.Errorf("RejectKind(%v) = %s; want %s", c.err, got, c.want)
		}
	}
}
