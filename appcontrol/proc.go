package appcontrol

import (
	"bytes"
	"errors"
	"os/user"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// subject is who runs an exec, as the kernel says: the process's real uid,
// real gid and supplementary groups, read from /proc/<pid>/status while
// the kernel holds the exec (and checked against the pidfd, so a pid
// reused in between cannot lend its identity).
type subject struct {
	uid    uint32
	gid    uint32
	ppid   int
	groups string // the Groups: line as the kernel writes it (sorted)
	// full is set when groups was read; the pidfd's own answer
	// (subjectFromPidfd) has the uid, gid and parent only.
	full bool
}

// PIDFD_GET_INFO request bits (linux/pidfd.h).
const (
	pidfdInfoPID   = 1 << 0
	pidfdInfoCreds = 1 << 1
)

var errNoCreds = errors.New("pidfd: no credentials in PIDFD_GET_INFO")

// subjectFromPidfd asks the pidfd itself (Linux 6.13 and later): one
// ioctl about exactly the process the kernel holds, no pid to race with,
// but no supplementary groups.
func subjectFromPidfd(pidfd int) (subject, error) {
	info := unix.PidfdInfo{Mask: pidfdInfoPID | pidfdInfoCreds}
	if err := unix.IoctlPidfdInfo(pidfd, &info); err != nil {
		if err == unix.ESRCH {
			return subject{}, errGone
		}
		return subject{}, err
	}
	if info.Mask&pidfdInfoCreds == 0 {
		return subject{}, errNoCreds
	}
	return subject{uid: info.Ruid, gid: info.Rgid, ppid: int(info.Ppid)}, nil
}

var errGone = errors.New("process gone")

// statusBuf holds /proc/<pid>/status with a Groups line of thousands of
// groups.
const statusBuf = 64 << 10

// readSubject reads /proc/<pid>/status into s. buf is scratch space.
func readSubject(pid, pidfd int, buf []byte) (subject, error) {
	var s subject
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return s, err
	}
	n, err := unix.Read(fd, buf)
	unix.Close(fd)
	if err != nil {
		return s, err
	}
	if n == len(buf) { // a Groups line this long would be cut: do not guess
		return s, errors.New(path + ": larger than " + strconv.Itoa(len(buf)) + " bytes")
	}
	s, err = parseStatus(buf[:n])
	if err != nil {
		return s, errors.New(path + ": " + err.Error())
	}
	// The process is held in exec by the kernel until we answer; if its
	// pidfd still reaches it now, the status read was this process's.
	if pidfd >= 0 && unix.PidfdSendSignal(pidfd, 0, nil, 0) != nil {
		return s, errGone
	}
	return s, nil
}

// parseStatus reads PPid, the real Uid and Gid, and Groups from the text
// of /proc/<pid>/status.
func parseStatus(data []byte) (subject, error) {
	var s subject
	var seen int
	for len(data) > 0 && seen < 4 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		switch {
		case bytes.HasPrefix(line, []byte("PPid:")):
			s.ppid, _ = strconv.Atoi(string(bytes.TrimSpace(line[5:])))
			seen++
		case bytes.HasPrefix(line, []byte("Uid:")):
			s.uid = firstField(line[4:])
			seen++
		case bytes.HasPrefix(line, []byte("Gid:")):
			s.gid = firstField(line[4:])
			seen++
		case bytes.HasPrefix(line, []byte("Groups:")):
			s.groups = string(bytes.TrimSpace(line[7:]))
			seen++
		}
	}
	if seen < 4 {
		return s, errors.New("Uid, Gid, PPid or Groups missing")
	}
	s.full = true
	return s, nil
}

func firstField(b []byte) uint32 {
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseUint(string(f[0]), 10, 32)
	return uint32(n)
}

// names turns uids and gids into names, remembering them for a while (a
// lookup may go through NSS; execs come fast).
type names struct {
	mu    sync.Mutex
	users map[uint32]cached
	grps  map[uint32]cached
	ttl   time.Duration
}

type cached struct {
	name string
	at   time.Time
}

func newNames() *names {
	return &names{users: map[uint32]cached{}, grps: map[uint32]cached{}, ttl: 30 * time.Second}
}

// user is the name of uid, or the number when it has none.
func (n *names) user(uid uint32, now time.Time) string {
	return n.lookup(n.users, uid, now, func(id string) (string, error) {
		u, err := user.LookupId(id)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

func (n *names) group(gid uint32, now time.Time) string {
	return n.lookup(n.grps, gid, now, func(id string) (string, error) {
		g, err := user.LookupGroupId(id)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func (n *names) lookup(m map[uint32]cached, id uint32, now time.Time, look func(string) (string, error)) string {
	n.mu.Lock()
	c, ok := m[id]
	n.mu.Unlock()
	if ok && now.Sub(c.at) < n.ttl {
		return c.name
	}
	s := strconv.FormatUint(uint64(id), 10)
	name, err := look(s)
	if err != nil {
		name = s
	}
	n.mu.Lock()
	if len(m) > 4096 {
		clear(m)
	}
	m[id] = cached{name: name, at: now}
	n.mu.Unlock()
	return name
}

// groupNames is the names of the primary group and the supplementary ones.
func (n *names) groupNames(s subject, now time.Time) []string {
	out := []string{n.group(s.gid, now)}
	for _, f := range bytes.Fields([]byte(s.groups)) {
		g, err := strconv.ParseUint(string(f), 10, 32)
		if err != nil || uint32(g) == s.gid {
			continue
		}
		out = append(out, n.group(uint32(g), now))
	}
	return out
}
