package engine

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"time"

	"warden/policy"
	"warden/state"
)

// mfaFreshFor is how long a verified user needs no new code.
const mfaFreshFor = 5 * time.Minute

// mfaIssuer names warden in authenticator apps.
const mfaIssuer = "warden"

type mfaSecret struct {
	Secret   string    `json:"secret"` // base32, as in the otpauth URI
	Enrolled time.Time `json:"enrolled"`
}

func mfaKey(user string) string { return "mfa/" + user }

// ErrUnknownUser is returned for MFA checks of a user never enrolled.
var ErrUnknownUser = errors.New("user is not enrolled for MFA")

// EnrollMFA creates (or replaces) user's TOTP secret in the encrypted store
// and returns the otpauth URI, which is shown once and never stored in
// plain text.
func (e *Engine) EnrollMFA(user string) (string, error) {
	secret, err := policy.NewTOTPSecret(rand.Reader)
	if err != nil {
		return "", err
	}
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	if err := e.opts.Store.Put(state.Secrets, mfaKey(user), mfaSecret{Secret: enc, Enrolled: e.opts.Now().UTC()}); err != nil {
		return "", err
	}
	e.mfaMu.Lock()
	delete(e.verified, user)
	delete(e.lastStep, user)
	e.mfaMu.Unlock()
	return policy.TOTPURI(mfaIssuer, user, secret)
}

// checkMFA verifies code for user; a code's time step is accepted once.
func (e *Engine) checkMFA(user, code string, now time.Time) bool {
	var s mfaSecret
	ok, err := e.opts.Store.Get(state.Secrets, mfaKey(user), &s)
	if err != nil || !ok {
		return false
	}
	secret, err := policy.ParseTOTPSecret(s.Secret)
	if err != nil {
		return false
	}
	step, ok := policy.VerifyTOTP(secret, code, now)
	if !ok {
		return false
	}
	e.mfaMu.Lock()
	defer e.mfaMu.Unlock()
	if last, seen := e.lastStep[user]; seen && step <= last {
		return false // replayed code
	}
	e.lastStep[user] = step
	e.verified[user] = now
	return true
}

// mfaFresh reports whether user verified a code in the last five minutes.
func (e *Engine) mfaFresh(user string, now time.Time) bool {
	e.mfaMu.Lock()
	defer e.mfaMu.Unlock()
	t, ok := e.verified[user]
	return ok && now.Sub(t) < mfaFreshFor
}
