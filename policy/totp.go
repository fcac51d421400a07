package policy

import (
	"crypto/hmac"
	"crypto/sha1" // RFC 6238's default, and what authenticator apps implement
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"
)

// TOTP parameters (RFC 6238 with the defaults authenticator apps expect):
// HMAC-SHA1, 6 digits, a 30-second step, one step of clock skew either way.
const (
	TOTPDigits     = 6
	TOTPStep       = 30 * time.Second
	TOTPSkew       = 1
	TOTPSecretSize = 20 // bytes: the HMAC-SHA1 block output, RFC 4226's recommendation
)

// ErrBadSecret is a TOTP secret too short to be one.
var ErrBadSecret = errors.New("totp: secret shorter than 10 bytes")

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewTOTPSecret reads a fresh secret from rand (crypto/rand.Reader in
// production).
func NewTOTPSecret(rand io.Reader) ([]byte, error) {
	s := make([]byte, TOTPSecretSize)
	if _, err := io.ReadFull(rand, s); err != nil {
		return nil, fmt.Errorf("totp: secret: %w", err)
	}
	return s, nil
}

// TOTPCounter is the RFC 6238 time step of t.
func TOTPCounter(t time.Time) int64 { return t.Unix() / int64(TOTPStep/time.Second) }

// TOTPCode is the 6-digit code of secret at t.
func TOTPCode(secret []byte, t time.Time) string {
	return hotp(secret, uint64(TOTPCounter(t)), TOTPDigits)
}

// VerifyTOTP checks code against secret at t, accepting the steps just
// before and after. It returns the step that matched, for the caller to
// refuse a second use of the same code (store it; accept only a later
// one). Comparison is in constant time.
func VerifyTOTP(secret []byte, code string, t time.Time) (step int64, ok bool) {
	if len(secret) < 10 || len(code) != TOTPDigits {
		return 0, false
	}
	now := TOTPCounter(t)
	for d := -int64(TOTPSkew); d <= TOTPSkew; d++ {
		c := now + d
		if c < 0 {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(hotp(secret, uint64(c), TOTPDigits)), []byte(code)) == 1 {
			return c, true
		}
	}
	return 0, false
}

// hotp is RFC 4226's HOTP: dynamic truncation of HMAC-SHA1(secret, counter).
func hotp(secret []byte, counter uint64, digits int) string {
	var msg [8]byte
	binary.BigEndian.PutUint64(msg[:], counter)
	m := hmac.New(sha1.New, secret)
	m.Write(msg[:])
	sum := m.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	v := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	mod := uint32(1)
	for range digits {
		mod *= 10
	}
	return fmt.Sprintf("%0*d", digits, v%mod)
}

// TOTPURI is the otpauth:// URI an authenticator app enrolls from (the
// Key Uri Format of Google Authenticator): label issuer:account, the
// secret in unpadded base32, and the parameters spelled out.
func TOTPURI(issuer, account string, secret []byte) (string, error) {
	if len(secret) < 10 {
		return "", ErrBadSecret
	}
	q := url.Values{}
	q.Set("secret", b32.EncodeToString(secret))
	q.Set("issuer", issuer)
	q.Set("algorithm", "SHA1")
	q.Set("digits", fmt.Sprint(TOTPDigits))
	q.Set("period", fmt.Sprint(int(TOTPStep/time.Second)))
	u := url.URL{Scheme: "otpauth", Host: "totp", Path: "/" + issuer + ":" + account, RawQuery: q.Encode()}
	return u.String(), nil
}

// ParseTOTPSecret decodes the base32 secret of an otpauth URI (padding and
// case optional).
func ParseTOTPSecret(s string) ([]byte, error) {
	b, err := b32.DecodeString(strings.TrimRight(strings.ToUpper(s), "="))
	if err != nil {
		return nil, fmt.Errorf("totp: secret: %w", err)
	}
	if len(b) < 10 {
		return nil, ErrBadSecret
	}
	return b, nil
}
