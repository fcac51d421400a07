package elevate

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Actor is the caller at the other end of a user-socket connection, as the
// kernel identifies it. It is built once at accept from SO_PEERCRED (and
// SO_PEERPIDFD where the kernel has it) and passed to every handler; nothing
// the client sends changes it.
type Actor struct {
	UID  uint32
	GID  uint32
	PID  int
	Name string // login name of UID ("uid:N" when the account has no name)
	// Groups are the names of the primary group and of the supplementary
	// groups the kernel holds for the calling process (/proc/PID/status),
	// not what /etc/group says today.
	Groups []string
	// Exe is /proc/PID/exe of the caller: the program that connected.
	Exe string
	// TTY names the caller's controlling terminal (/dev/pts/N), if any.
	TTY string

	pidfd int // -1 when the kernel has no SO_PEERPIDFD
}

// ErrPeerGone is returned when the calling process exited (or its pid was
// recycled) while the agent was reading its credentials.
var ErrPeerGone = errors.New("peer process exited during identification")

// procRoot is /proc; tests do not change it, but it names the dependency.
const procRoot = "/proc"

// ActorFromConn identifies the process at the other end of c. The pid is
// pinned with a pidfd when the kernel offers one, and the pidfd is checked
// after /proc was read, so a pid that was recycled in between cannot stand
// in for the caller.
func ActorFromConn(c *net.UnixConn) (*Actor, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	pidfd := -1
	var credErr error
	err = raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr != nil {
			return
		}
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
			pidfd = v
		}
	})
	if err == nil {
		err = credErr
	}
	if err != nil {
		return nil, fmt.Errorf("peer credentials: %w", err)
	}
	a := &Actor{UID: cred.Uid, GID: cred.Gid, PID: int(cred.Pid), pidfd: pidfd}
	if err := a.resolve(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// resolve fills name, groups, exe and tty from the kernel's view of the
// process, then checks the process is still the one that connected.
func (a *Actor) resolve() error {
	if a.pidfd >= 0 {
		if pid, err := pidOfPidfd(a.pidfd); err == nil && pid != a.PID {
			return ErrPeerGone
		}
	}
	status, err := os.ReadFile(fmt.Sprintf("%s/%d/status", procRoot, a.PID))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrPeerGone, err)
	}
	uid, gids, err := parseStatus(status)
	if err != nil {
		return fmt.Errorf("/proc/%d/status: %w", a.PID, err)
	}
	// The status we read must be the connecting process's: same effective
	// uid as SO_PEERCRED recorded at connect.
	if uid != a.UID {
		return fmt.Errorf("%w: /proc/%d is uid %d now, the socket said %d", ErrPeerGone, a.PID, uid, a.UID)
	}
	a.Exe, _ = os.Readlink(fmt.Sprintf("%s/%d/exe", procRoot, a.PID))
	a.TTY = ttyOf(a.PID)
	if !a.Alive() {
		return ErrPeerGone
	}
	a.Name = userName(a.UID)
	a.Groups = groupNames(append([]uint32{a.GID}, gids...))
	return nil
}

// Alive reports whether the calling process still exists (and, with a
// pidfd, is the same process).
func (a *Actor) Alive() bool {
	if a.pidfd >= 0 {
		return unix.PidfdSendSignal(a.pidfd, 0, nil, 0) == nil
	}
	err := unix.Kill(a.PID, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// Pinned reports whether the process is pinned with a pidfd.
func (a *Actor) Pinned() bool { return a.pidfd >= 0 }

// Close releases the pidfd.
func (a *Actor) Close() {
	if a.pidfd >= 0 {
		unix.Close(a.pidfd)
		a.pidfd = -1
	}
}

// String is how the actor appears in logs.
func (a *Actor) String() string {
	return fmt.Sprintf("%s(uid=%d pid=%d)", a.Name, a.UID, a.PID)
}

// pidOfPidfd reads the pid a pidfd refers to (fdinfo "Pid:"); -1 once the
// process is gone.
func pidOfPidfd(fd int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte("Pid:")); ok {
			return strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	return 0, errors.New("no Pid in fdinfo")
}

// parseStatus reads the effective uid and the supplementary groups from a
// /proc/PID/status file.
func parseStatus(data []byte) (euid uint32, groups []uint32, err error) {
	var sawUID, sawGroups bool
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		switch k {
		case "Uid":
			if len(f) < 2 {
				return 0, nil, errors.New("short Uid line")
			}
			n, err := strconv.ParseUint(f[1], 10, 32)
			if err != nil {
				return 0, nil, fmt.Errorf("Uid: %w", err)
			}
			euid, sawUID = uint32(n), true
		case "Groups":
			for _, s := range f {
				n, err := strconv.ParseUint(s, 10, 32)
				if err != nil {
					return 0, nil, fmt.Errorf("Groups: %w", err)
				}
				groups = append(groups, uint32(n))
			}
			sawGroups = true
		}
	}
	if !sawUID || !sawGroups {
		return 0, nil, errors.New("no Uid or Groups line")
	}
	return euid, groups, nil
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return "uid:" + strconv.FormatUint(uint64(uid), 10)
}

// groupNames resolves gids to names, in order, without duplicates; a gid
// with no name is listed as "gid:N" (which no policy names by accident).
func groupNames(gids []uint32) []string {
	seen := map[uint32]bool{}
	var out []string
	for _, g := range gids {
		if seen[g] {
			continue
		}
		seen[g] = true
		name := "gid:" + strconv.FormatUint(uint64(g), 10)
		if gr, err := user.LookupGroupId(strconv.FormatUint(uint64(g), 10)); err == nil {
			name = gr.Name
		}
		out = append(out, name)
	}
	return out
}

// ttyOf names the controlling terminal of pid from /proc/PID/stat's
// tty_nr, for the audit record; "" when it has none or it is not a pty.
func ttyOf(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("%s/%d/stat", procRoot, pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return ""
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 5 {
		return ""
	}
	nr, err := strconv.ParseUint(f[4], 10, 32)
	if err != nil || nr == 0 {
		return ""
	}
	major, minor := unix.Major(nr), unix.Minor(nr)
	if major >= 136 && major <= 143 {
		return fmt.Sprintf("/dev/pts/%d", (major-136)*256+minor)
	}
	return fmt.Sprintf("tty(%d,%d)", major, minor)
}
