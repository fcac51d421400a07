package policy

import (
	"bytes"
	"net/url"
	"strings"
	"testing"
	"time"
)

// rfcSecret is the SHA1 key of RFC 4226 appendix D and RFC 6238 appendix B.
var rfcSecret = []byte("12345678901234567890")

func TestHOTPVectors(t *testing.T) { // RFC 4226 appendix D
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	for c, w := range want {
		if got := hotp(rfcSecret, uint64(c), 6); got != w {
			t.Errorf("HOTP(%d) = %s, want %s", c, got, w)
		}
	}
}

func TestTOTPVectors(t *testing.T) { // RFC 6238 appendix B, SHA1 rows
	cases := []struct {
		unix  int64
		eight string
	}{
		{59, "94287082"}, {1111111109, "07081804"}, {1111111111, "14050471"},
		{1234567890, "89005924"}, {2000000000, "69279037"}, {20000000000, "65353130"},
	}
	for _, tc := range cases {
		at := time.Unix(tc.unix, 0)
		if got := hotp(rfcSecret, uint64(TOTPCounter(at)), 8); got != tc.eight {
			t.Errorf("TOTP8(%d) = %s, want %s", tc.unix, got, tc.eight)
		}
		if got := TOTPCode(rfcSecret, at); got != tc.eight[2:] {
			t.Errorf("TOTP6(%d) = %s, want %s", tc.unix, got, tc.eight[2:])
		}
	}
}

func TestVerifyTOTP(t *testing.T) {
	at := time.Unix(1111111111, 0)
	code := TOTPCode(rfcSecret, at)
	cases := []struct {
		name string
		at   time.Time
		code string
		ok   bool
	}{
		{"same step", at, code, true},
		{"one step later", at.Add(30 * time.Second), code, true},
		{"one step earlier", at.Add(-30 * time.Second), code, true},
		{"two steps later", at.Add(61 * time.Second), code, false},
		{"wrong code", at, "000000", false},
		{"short code", at, code[:5], false},
		{"long code", at, code + "0", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			step, ok := VerifyTOTP(rfcSecret, tc.code, tc.at)
			if ok != tc.ok {
				t.Fatalf("VerifyTOTP = %v, want %v", ok, tc.ok)
			}
			if ok && step != TOTPCounter(at) {
				t.Errorf("step %d, want %d (the step the code belongs to)", step, TOTPCounter(at))
			}
		})
	}
	if _, ok := VerifyTOTP([]byte("short"), code, at); ok {
		t.Error("a 5-byte secret verified")
	}
}

func TestTOTPURI(t *testing.T) {
	secret, err := NewTOTPSecret(bytes.NewReader(bytes.Repeat([]byte{0xA5}, 32)))
	if err != nil || len(secret) != TOTPSecretSize {
		t.Fatalf("NewTOTPSecret = %x, %v", secret, err)
	}
	uri, err := TOTPURI("warden", "carol@ws-17", secret)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/warden:carol@ws-17" {
		t.Fatalf("uri %s: %v", uri, err)
	}
	q := u.Query()
	if q.Get("issuer") != "warden" || q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Errorf("uri parameters: %v", q)
	}
	back, err := ParseTOTPSecret(strings.ToLower(q.Get("secret")) + "====")
	if err != nil || !bytes.Equal(back, secret) {
		t.Errorf("secret round trip: %x, %v", back, err)
	}
	if _, err := NewTOTPSecret(bytes.NewReader(nil)); err == nil {
		t.Error("NewTOTPSecret from an empty reader succeeded")
	}
	if _, err := TOTPURI("warden", "x", []byte("short")); err == nil {
		t.Error("TOTPURI accepted a short secret")
	}
}
