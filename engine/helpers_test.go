package engine_test

import (
	"net/url"
	"testing"
	"time"

	"warden/policy"
)

// secretOf is the TOTP secret of an otpauth URI.
func secretOf(t *testing.T, uri string) []byte {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := policy.ParseTOTPSecret(u.Query().Get("secret"))
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// wrongCode is a 6-digit code that is not valid for secret around at.
func wrongCode(secret []byte, at time.Time) string {
	for _, c := range []string{"000000", "111111", "222222", "333333"} {
		if _, ok := policy.VerifyTOTP(secret, c, at); !ok {
			return c
		}
	}
	panic("unreachable")
}
