package engine

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"time"

	"warden/audit"

	"warden/policy"
	"warden/state"
)

// mfaIssuer names warden in authenticator apps.
const mfaIssuer = "warden"

type mfaSecret struct {
	Secret   string    `json:"secret"` // base32, as in the otpauth URI
	Enrolled time.Time `json:"enrolled"`
}

func mfaKey(user string) string { return "mfa/" + user }

// ErrUnknownUser is returned for MFA checks of a user never enrolled.
var ErrUnknownUser = errors.New("user is not enrolled for MFA")

// Errors of EnrollMFA.
var (
	// ErrEnrolled: the user has a secret and Force was not given.
	ErrEnrolled = errors.New("user already has an MFA secret (--force replaces it)")
	// ErrBadUserName: the name breaks the user name rule (ValidUserName).
	ErrBadUserName = errors.New("invalid user name")
)

// maxUserName bounds a user name (Linux's is 32; directory names such as
// user@domain need more).
const maxUserName = 64

// ValidUserName checks a user name for MFA enrolment: 1 to 64 bytes of
// letters, digits and . _ @ -, not starting with - (POSIX's portable
// user names, plus @ for directory users), optionally ending in $.
func ValidUserName(name string) error {
	if name == "" || len(name) > maxUserName {
		return fmt.Errorf("%w: user: must be 1 to %d bytes, got %d", ErrBadUserName, maxUserName, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '@' || c == '-' && i > 0 || c == '$' && i == len(name)-1 && i > 0
		if !ok {
			return fmt.Errorf("%w: user: byte %d (%q) is not allowed: letters, digits, . _ @ - (not first) and a final $ only",
				ErrBadUserName, i, c)
		}
	}
	return nil
}

// EnrollOptions says who enrolls and whether an existing secret may be
// replaced.
type EnrollOptions struct {
	Force bool            // replace an existing secret
	By    *audit.UserInfo // who asked (for the ADMIN_ACTION event)
}

// EnrollMFA creates user's TOTP secret in the encrypted store and returns
// the otpauth URI, which is shown once and never stored in plain text. It
// refuses a bad name (ErrBadUserName) and, without Force, a user who has a
// secret (ErrEnrolled). The enrolment is audited as ADMIN_ACTION before
// the secret is stored: when the event cannot be stored, nothing changes
// (ErrAuditUnavailable).
func (e *Engine) EnrollMFA(ctx context.Context, user string, o EnrollOptions) (string, error) {
	if err := ValidUserName(user); err != nil {
		return "", err
	}
	var old mfaSecret
	had, err := e.opts.Store.Get(state.Secrets, mfaKey(user), &old)
	if err != nil {
		return "", err
	}
	if had && !o.Force {
		return "", fmt.Errorf("%s: %w", user, ErrEnrolled)
	}
	secret, err := policy.NewTOTPSecret(rand.Reader)
	if err != nil {
		return "", err
	}
	action := "mfa enroll"
	if had {
		action = "mfa enroll (replaced the existing secret)"
	}
	if err := e.audit(ctx, audit.Event{Type: audit.AdminAction, Component: "engine", UserInfo: o.By,
		TargetInfo: &audit.TargetInfo{Kind: "mfa", ID: user},
		Details:    map[string]any{"action": action, "user": user, "replaced": had}}); err != nil {
		return "", err
	}
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(secret)
	if err := e.opts.Store.Put(state.Secrets, mfaKey(user), mfaSecret{Secret: enc, Enrolled: e.opts.Now().UTC()}); err != nil {
		return "", err
	}
	return policy.TOTPURI(mfaIssuer, user, secret)
}

// MFA lockout: mfaMaxFailures wrong codes within mfaWindow lock the
// user's MFA for mfaLockFor. Failures are counted per user, whatever the
// session, machine or caller.
const (
	mfaMaxFailures = 5
	mfaWindow      = 15 * time.Minute
	mfaLockFor     = 15 * time.Minute
)

// mfaState is a user's MFA history, stored next to the secret so that a
// restart neither forgives failures nor lets a used code be used again.
type mfaState struct {
	Failures    []time.Time `json:"failures,omitempty"` // within the window
	LockedUntil time.Time   `json:"lockedUntil,omitzero"`
	LastStep    int64       `json:"lastStep,omitempty"` // of the last code accepted
}

func mfaStateKey(user string) string { return "mfa-state/" + user }

// checkMFA is the MFA step of one evaluation that asks for MFA. For a user
// whose MFA is locked it verifies nothing and says so in r. Otherwise it
// checks req's code (if any): a code verifies once (its time step is
// recorded, and only a later step is accepted), and satisfies this
// evaluation only. A wrong, replayed or unusable code is a failure
// (MFA_FAILED); the fifth within 15 minutes locks the user (MFA_LOCKED).
// The failure is audited before it is answered: if it cannot be, checkMFA
// returns the error.
func (e *Engine) checkMFA(ctx context.Context, c Caller, req *policy.Request, r *Result, now time.Time) (bool, error) {
	user := req.User
	e.mfaMu.Lock()
	defer e.mfaMu.Unlock()
	var st mfaState
	if _, err := e.opts.Store.Get(state.Secrets, mfaStateKey(user), &st); err != nil {
		return false, fmt.Errorf("mfa state of %s: %w", user, err)
	}
	if now.Before(st.LockedUntil) {
		e.locked(r, user, st.LockedUntil)
		return false, nil
	}
	if req.MFACode == "" {
		return false, nil
	}
	step, why := e.verifyCode(user, req.MFACode, now)
	if why == "" && step > st.LastStep {
		st.LastStep = step
		r.MFA = "verified"
		return true, e.opts.Store.Put(state.Secrets, mfaStateKey(user), st)
	}
	if why == "" {
		why = "code already used"
	}
	r.MFA = "failed"
	if why == whyNotEnrolled {
		// Audited, but not counted or stored: there is no secret to
		// guess, and a caller naming made-up users must not fill the
		// store with their failure records.
		return false, e.audit(ctx, audit.Event{Type: audit.MFAFailed, Severity: audit.Warning, Component: "engine",
			UserInfo: requestUserInfo(c, req), TargetInfo: &audit.TargetInfo{Kind: req.Action, Path: req.Application.Path},
			Details: map[string]any{"reason": why, "policy": r.Policy}})
	}
	st.Failures = slices.DeleteFunc(st.Failures, func(t time.Time) bool { return now.Sub(t) >= mfaWindow || t.After(now) })
	st.Failures = append(st.Failures, now.UTC())
	ui := requestUserInfo(c, req)
	evs := []audit.Event{{Type: audit.MFAFailed, Severity: audit.Warning, Component: "engine",
		UserInfo: ui, TargetInfo: &audit.TargetInfo{Kind: req.Action, Path: req.Application.Path},
		Details: map[string]any{"reason": why, "failures": len(st.Failures), "policy": r.Policy}}}
	if len(st.Failures) >= mfaMaxFailures {
		st.Failures, st.LockedUntil = nil, now.Add(mfaLockFor).UTC()
		evs = append(evs, audit.Event{Type: audit.MFALocked, Severity: audit.Warning, Component: "engine",
			UserInfo: ui, Details: map[string]any{"lockedUntil": st.LockedUntil,
				"reason": fmt.Sprintf("%d failed codes within %s", mfaMaxFailures, mfaWindow)}})
		e.locked(r, user, st.LockedUntil)
	}
	// The count and its events are stored together: a failure that could
	// not be audited is not answered, and none is counted unaudited.
	return false, e.commit(state.Secrets, map[string]any{mfaStateKey(user): st}, evs...)
}

// locked makes r say that user's MFA is locked until when.
func (e *Engine) locked(r *Result, user string, until time.Time) {
	u := until.UTC()
	r.MFA, r.MFALockedUntil = "locked", &u
	r.Reason += fmt.Sprintf("; MFA for %s is locked until %s after %d failed codes", user, u.Format(time.RFC3339), mfaMaxFailures)
}

const whyNotEnrolled = "user not enrolled"

// verifyCode checks code against user's secret; it returns the code's
// time step, or why it is not a valid code.
func (e *Engine) verifyCode(user, code string, now time.Time) (int64, string) {
	var s mfaSecret
	ok, err := e.opts.Store.Get(state.Secrets, mfaKey(user), &s)
	if err != nil || !ok {
		return 0, whyNotEnrolled
	}
	secret, err := policy.ParseTOTPSecret(s.Secret)
	if err != nil {
		return 0, "stored secret unusable"
	}
	step, ok := policy.VerifyTOTP(secret, code, now)
	if !ok {
		return 0, "wrong code"
	}
	return step, ""
}
