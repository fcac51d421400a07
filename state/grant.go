package state

import "time"

// Grant is a time-limited privilege: User may use Scope until ExpiresAt.
// The engine creates grants; reconcile's controllers make the ones in force
// true on the machine (a sudoers drop-in for Action "elevate", a POSIX ACL
// entry for Action "access") and remove them at expiry. Grants are stored
// in the Grants bucket by ID.
type Grant struct {
	ID      string `json:"id"`
	User    string `json:"user"`
	UID     uint32 `json:"uid,omitempty"` // the kernel's uid of the requester (attested grants)
	Machine string `json:"machine,omitempty"`
	Action  string `json:"action"` // "elevate" or "access"
	// Scope is the executable for elevate, the target path for access.
	Scope  string `json:"scope"`
	SHA256 string `json:"sha256,omitempty"` // the executable's digest (elevate)
	// Access is "read" or "write" for file access grants.
	Access string `json:"access,omitempty"`
	Policy string `json:"policy"`
	// Attested is true only for grants requested over the user socket,
	// where the kernel vouched for the user. Only attested grants take
	// effect on the machine; a decision made over HTTP never does.
	Attested  bool      `json:"attested,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	ExpiresAt time.Time `json:"expiresAt"`
}
