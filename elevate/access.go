package elevate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"warden/elevate/wire"
	"warden/policy"
)

// AccessResult is what `warden access` prints.
type AccessResult struct {
	Path      string     `json:"path"`
	Access    string     `json:"access"` // read or write
	Policy    string     `json:"policy"`
	GrantID   string     `json:"grantId,omitempty"`
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
}

// access serves wire.TypeAccess: a FileAccess evaluation for the kernel's user.
// The target is resolved by the agent (relative to the caller's working
// directory, symlinks followed to the object they name) so the policy
// judges the file the ACL would land on, not a link the user made.
func (ss *session) access(m *wire.Message) {
	target, err := resolveTarget(m.Path, callerCwd(ss.a.PID))
	if err != nil {
		ss.fail(wire.ExitRefused, err.Error())
		return
	}
	if m.Seconds > policy.MaxGrantSeconds {
		ss.fail(wire.ExitUsage, fmt.Sprintf("--for: at most %s", time.Duration(policy.MaxGrantSeconds)*time.Second))
		return
	}
	req := &policy.Request{Action: policy.ActionFileAccess, Justification: strings.TrimSpace(m.Reason),
		Target: &policy.Target{Path: target, Write: m.Write}, RequestedSeconds: m.Seconds,
		Application: policy.Application{Parent: parentExe(ss.a.PID)}}
	ss.startReader()
	r, record, ok := ss.decide(req, m)
	if !ok {
		return
	}
	if err := record(); err != nil {
		ss.fail(wire.ExitRefused, "the policy engine did not answer: "+err.Error())
		return
	}
	if r.Effective != policy.Allow {
		ss.fail(wire.ExitRefused, denial(&r))
		return
	}
	res := AccessResult{Path: target, Access: "read", Policy: r.Policy, GrantID: r.GrantID, ExpiresAt: r.GrantExpiresAt}
	if m.Write {
		res.Access = "write"
	}
	if r.Notify {
		ss.c.Send(&wire.Message{Type: wire.TypeNotice, Text: fmt.Sprintf("policy %s (%s) would have decided %s: %s",
			r.Policy, r.Mode, r.Decision.Decision, r.Reason)})
	}
	data, _ := json.Marshal(res)
	ss.c.Send(&wire.Message{Type: wire.TypeResult, Data: data})
}

// resolveTarget makes p absolute against cwd and resolves every symlink in
// it, reading links only (nothing is opened through them).
func resolveTarget(p, cwd string) (string, error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(cwd, p)
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(p))
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, errors.Unwrap(err))
	}
	if _, err := os.Lstat(real); err != nil {
		return "", err
	}
	return real, nil
}
