package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"warden/state"
)

// Names of the privilege controllers, and the drift kinds they report
// (DESIGN.md, "Elevation on Linux").
const (
	SudoersController = "sudoers"
	ACLController     = "acl"
	GroupsController  = "groups"

	KindSudoersGrant      = "SudoersGrant"
	KindFileACL           = "FileACL"
	KindGroupMembership   = "GroupMembership"
	KindStandingPrivilege = "StandingPrivilege"
)

// Privileges are the controllers that make privileges true on the machine
// and take them away on time: sudoers drop-ins for elevate grants, POSIX
// ACL entries for access grants, and the admin groups of LeastPrivilege
// policies. Call Manager.AddPrivileges before Run.
type Privileges struct {
	Sudoers *Sudoers
	ACL     *ACL
	Groups  *Groups
}

// PrivilegeOptions tunes the privilege controllers.
type PrivilegeOptions struct {
	// Sudoers is the main sudoers file whose rules are read with
	// cvtsudoers (default /etc/sudoers).
	Sudoers string
	// GroupFile is the group database watched (default /etc/group).
	GroupFile string
	// Machine is this machine's name, matched against LeastPrivilege
	// policies' machines filter (default os.Hostname).
	Machine string
}

// AddPrivileges adds the sudoers, acl and groups controllers.
func (m *Manager) AddPrivileges(o PrivilegeOptions) (*Privileges, error) {
	if o.Sudoers == "" {
		o.Sudoers = "/etc/sudoers"
	}
	if o.GroupFile == "" {
		o.GroupFile = "/etc/group"
	}
	if o.Machine == "" {
		o.Machine, _ = os.Hostname()
	}
	p := &Privileges{
		Sudoers: &Sudoers{m: m, sudoers: o.Sudoers, written: map[string][32]byte{}},
		ACL:     &ACL{m: m},
		Groups:  &Groups{m: m, sudoers: o.Sudoers, groupFile: o.GroupFile, machine: o.Machine},
	}
	var err error
	if p.Sudoers.ctrl, err = m.Add(SudoersController, p.Sudoers, ControllerOptions{}); err != nil {
		return nil, err
	}
	if p.ACL.ctrl, err = m.Add(ACLController, p.ACL, ControllerOptions{}); err != nil {
		return nil, err
	}
	if p.Groups.ctrl, err = m.Add(GroupsController, p.Groups, ControllerOptions{}); err != nil {
		return nil, err
	}
	return p, nil
}

// grantsInForce lists the attested grants of action that have not expired
// at now, by id. A grant not attested by the kernel (a decision over HTTP)
// never takes effect on the machine.
func grantsInForce(st *state.Store, action string, now time.Time) (map[string]state.Grant, error) {
	out := map[string]state.Grant{}
	err := st.List(state.Grants, func(_ string, v json.RawMessage) error {
		var g state.Grant
		if err := json.Unmarshal(v, &g); err != nil {
			return err
		}
		if g.Action == action && g.Attested && now.Before(g.ExpiresAt) {
			out[g.ID] = g
		}
		return nil
	})
	return out, err
}

// nextExpiry is how long until the first of grants expires; 0 if none.
// A controller asks to be requeued then, so a grant goes on time even if
// no one deletes it from the store (the engine's timer does, and wakes
// the controller earlier through the Grants bucket).
func nextExpiry(grants map[string]state.Grant, now time.Time) time.Duration {
	var d time.Duration
	for _, g := range grants {
		if left := g.ExpiresAt.Sub(now); left > 0 && (d == 0 || left < d) {
			d = left
		}
	}
	if d > 0 {
		d += time.Millisecond // past the instant, not just before it
	}
	return d
}

// watchGrants enqueues every key of c after each change of the Grants
// bucket, until ctx ends.
func watchGrants(ctx context.Context, m *Manager, c *Controller) {
	ch, cancel := m.store.WatchBucket(state.Grants)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-ch:
			if !ok {
				return
			}
			c.resync(ctx)
		}
	}
}

// grantUser checks that the grant's user still is the uid the kernel
// vouched for: a user deleted and a name given to someone else since must
// not inherit the grant.
func grantUser(g state.Grant) (*user.User, error) {
	u, err := user.Lookup(g.User)
	if err != nil {
		return nil, fmt.Errorf("grant %s: user %q: %w", g.ID, g.User, err)
	}
	if u.Uid != strconv.FormatUint(uint64(g.UID), 10) {
		return nil, fmt.Errorf("grant %s: user %q has uid %s, the grant was made for uid %d", g.ID, g.User, u.Uid, g.UID)
	}
	return u, nil
}

// openPath opens an absolute path as an O_PATH descriptor, one component
// at a time without following any symlink: a symlink anywhere on the way
// fails with ELOOP (or ENOTDIR) instead of leading root elsewhere.
func openPath(path string, last int) (int, error) {
	if !strings.HasPrefix(path, "/") {
		return -1, fmt.Errorf("%q: not an absolute path", path)
	}
	fd, err := unix.Open("/", oDir, 0)
	if err != nil {
		return -1, err
	}
	comps := strings.FieldsFunc(path, func(r rune) bool { return r == '/' })
	for i, c := range comps {
		if c == "." || c == ".." {
			unix.Close(fd)
			return -1, fmt.Errorf("%q: . or .. in path", path)
		}
		flags := oDir
		if i == len(comps)-1 {
			flags = last
		}
		next, err := unix.Openat(fd, c, flags, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// isLoop reports whether err says a symlink was met where none may be.
func isLoop(err error) bool { return errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) }

func grantList(m map[string]state.Grant) []state.Grant {
	out := make([]state.Grant, 0, len(m))
	for _, g := range m {
		out = append(out, g)
	}
	return out
}

// lookupUID is the uid of a user name, as a decimal string.
func lookupUID(name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", err
	}
	return u.Uid, nil
}
