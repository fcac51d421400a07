package engine

import (
	"fmt"
	"strconv"

	"warden/audit"
	"warden/pki"
)

// CallerKind says how the engine knows who is asking.
type CallerKind string

// Kinds of callers.
const (
	// CallerUser is a local user over the user socket: the kernel vouched
	// for the uid (SO_PEERCRED), and the agent resolved name and groups.
	CallerUser CallerKind = "user"
	// CallerPlugin is a plugin's client certificate over the HTTPS API.
	CallerPlugin CallerKind = "plugin"
	// CallerAdmin is the admin client certificate over the HTTPS API.
	CallerAdmin CallerKind = "admin"
)

// Caller is who asks the engine: built by the transport from the
// connection (peer credentials or client certificate), never from the
// request. The engine trusts only Caller for identity: for a user caller,
// the request's user and groups are replaced by Name and Groups.
type Caller struct {
	Kind CallerKind
	// Name is the user's login name (CallerUser) or the certificate's
	// name (the plugin id, "cli" for the admin CLI).
	Name   string
	UID    uint32   // CallerUser only
	PID    int      // CallerUser only: the calling process
	Groups []string // CallerUser only: the user's groups, as the agent resolved them
}

// Attested reports whether the kernel vouched for the caller's identity.
// Only attested callers get grants that take effect on the machine.
func (c Caller) Attested() bool { return c.Kind == CallerUser }

// Identity is how audit events name the caller: "uid:N" for a user,
// "plugin/ID" or "admin/NAME" for a certificate.
func (c Caller) Identity() string {
	if c.Kind == CallerUser {
		return "uid:" + strconv.FormatUint(uint64(c.UID), 10)
	}
	return string(c.Kind) + "/" + c.Name
}

// String names the caller in messages: "uid:1001 (carol)" or "admin/cli".
func (c Caller) String() string {
	if c.Kind == CallerUser {
		return fmt.Sprintf("%s (%s)", c.Identity(), c.Name)
	}
	return c.Identity()
}

// userInfo is the audit record's caller: the identity, and for a user the
// kernel's user and groups.
func (c Caller) userInfo() *audit.UserInfo {
	ui := &audit.UserInfo{Identity: c.Identity()}
	if c.Kind == CallerUser {
		ui.User, ui.Groups, ui.PeerPID = c.Name, c.Groups, c.PID
	}
	return ui
}

// CallerFromIdentity is the caller an authenticated client certificate
// names (api.IdentityOf). A certificate is never an attested user: a role
// other than admin and plugin is an error.
func CallerFromIdentity(id pki.Identity) (Caller, error) {
	switch id.Role {
	case pki.RoleAdmin:
		return Caller{Kind: CallerAdmin, Name: id.Name}, nil
	case pki.RolePlugin:
		return Caller{Kind: CallerPlugin, Name: id.Name}, nil
	}
	return Caller{}, fmt.Errorf("certificate role %q is not a caller of the engine", id.Role)
}
