// Package testuser gives tests real accounts: users and groups made with
// useradd and groupadd for one test and removed (with any process left
// running as them) when it ends. Tests of what warden does for and to
// local users (elevation, sudo grants, ACLs, admin groups, application
// control) run as root in CI and use it; without root they skip.
package testuser

import (
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// User is an account made for a test.
type User struct {
	Name     string
	UID, GID uint32
	Groups   []uint32 // every group the account is in, its primary group included
}

// Options shape the account New makes.
type Options struct {
	// Groups are extra groups, made for the test (removed after), that the
	// user is a member of.
	Groups []string
	// NoUserGroup puts the user in the default group (useradd -N) instead
	// of a group of its own.
	NoUserGroup bool
}

// New makes the account name (removing one a killed run left behind), with
// no home and /bin/sh as its shell, and removes it when the test ends.
func New(t testing.TB, name string, o Options) User {
	t.Helper()
	requireRoot(t)
	exec.Command("userdel", name).Run()
	for _, g := range o.Groups {
		Group(t, g)
	}
	args := []string{"-M", "-s", "/bin/sh"}
	if o.NoUserGroup {
		args = append(args, "-N")
	} else {
		args = append(args, "-U")
	}
	if len(o.Groups) > 0 {
		args = append(args, "-G", strings.Join(o.Groups, ","))
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v %s", name, err, out)
	}
	t.Cleanup(func() {
		// userdel refuses while a process of the user is alive, and a
		// killed one takes a moment to go.
		exec.Command("pkill", "-KILL", "-u", name).Run()
		var out []byte
		var err error
		for range 40 {
			if out, err = exec.Command("userdel", name).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("userdel %s: %v %s", name, err, out)
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	tu := User{Name: name, UID: parse(u.Uid), GID: parse(u.Gid)}
	gids, _ := u.GroupIds()
	for _, g := range gids {
		tu.Groups = append(tu.Groups, parse(g))
	}
	return tu
}

// Group makes the group name (removing one a killed run left behind) and
// removes it when the test ends.
func Group(t testing.TB, name string) {
	t.Helper()
	requireRoot(t)
	exec.Command("groupdel", name).Run()
	if out, err := exec.Command("groupadd", name).CombinedOutput(); err != nil {
		t.Fatalf("groupadd %s: %v %s", name, err, out)
	}
	t.Cleanup(func() { exec.Command("groupdel", name).Run() })
}

// Credential runs a process as u, with its groups.
func (u User) Credential() *syscall.Credential {
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}
}

// Lookup is u as os/user knows it.
func (u User) Lookup(t testing.TB) *user.User {
	t.Helper()
	uu, err := user.Lookup(u.Name)
	if err != nil {
		t.Fatal(err)
	}
	return uu
}

func requireRoot(t testing.TB) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes real users and groups")
	}
}

func parse(id string) uint32 {
	n, _ := strconv.ParseUint(id, 10, 32)
	return uint32(n)
}
