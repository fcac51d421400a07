package appcontrol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// group is one fanotify group (one file descriptor) with its marks.
// Closing it drops the marks; the kernel answers the events still waiting
// for it with allow.
type group struct {
	f      *os.File
	pidfd  bool // events carry a pidfd (FAN_REPORT_PIDFD)
	mounts []string
	closed atomic.Bool
}

// event is one exec the kernel reported. fd is the file being executed,
// opened by the kernel for us; pidfd pins the process (-1 when the kernel
// gave none).
type event struct {
	g        *group
	mask     uint64
	fd       int
	pid      int
	pidfd    int
	mu       sync.Mutex // answered, and the fd until released
	answered bool
}

// openGroup creates a content-class group whose events carry pidfds when
// the kernel can (5.15 and later) and marks each mount for exec
// permission events. Every path must be a mount point: marking "the mount
// that holds this folder" by mistake could be the root filesystem.
func openGroup(mounts []string) (*group, error) {
	const flags = unix.FAN_CLASS_CONTENT | unix.FAN_CLOEXEC | unix.FAN_NONBLOCK | unix.FAN_UNLIMITED_QUEUE
	eventFlags := uint(unix.O_RDONLY | unix.O_CLOEXEC | unix.O_LARGEFILE)
	g := &group{mounts: mounts, pidfd: true}
	fd, err := unix.FanotifyInit(flags|unix.FAN_REPORT_PIDFD, eventFlags)
	if errors.Is(err, unix.EINVAL) {
		g.pidfd = false
		fd, err = unix.FanotifyInit(flags, eventFlags)
	}
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	// A non-blocking descriptor goes through Go's poller, so Close wakes a
	// reader blocked in Read.
	g.f = os.NewFile(uintptr(fd), "fanotify")
	for _, m := range mounts {
		if err := checkMountPoint(m); err != nil {
			g.close()
			return nil, err
		}
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, m); err != nil {
			g.close()
			return nil, fmt.Errorf("fanotify_mark %s: %w", m, err)
		}
	}
	return g, nil
}

// checkMountPoint refuses a path that is not the root of a mount.
func checkMountPoint(p string) error {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &st); err != nil {
		return fmt.Errorf("mount %s: %w", p, err)
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return fmt.Errorf("mount %s: not a mount point (applicationControl.mounts lists mount points)", p)
	}
	return nil
}

func (g *group) close() {
	if g.closed.CompareAndSwap(false, true) {
		g.f.Close()
	}
}

// read blocks for the next batch of events and calls fn for each. It
// returns an error when the group is closed.
func (g *group) read(buf []byte, fn func(*event)) error {
	n, err := g.f.Read(buf)
	if err != nil {
		return err
	}
	for off := 0; off+unix.FAN_EVENT_METADATA_LEN <= n; {
		md := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
		if md.Event_len < unix.FAN_EVENT_METADATA_LEN || off+int(md.Event_len) > n {
			return fmt.Errorf("fanotify: malformed event of %d bytes", md.Event_len)
		}
		ev := &event{g: g, mask: md.Mask, fd: int(md.Fd), pid: int(md.Pid), pidfd: -1}
		// Information records follow the metadata; the pidfd one is
		// {type u8, pad u8, len u16, pidfd s32}.
		for rec := off + int(md.Metadata_len); rec+8 <= off+int(md.Event_len); {
			typ, l := buf[rec], int(binary.NativeEndian.Uint16(buf[rec+2:]))
			if l < 4 {
				break
			}
			if typ == unix.FAN_EVENT_INFO_TYPE_PIDFD {
				ev.pidfd = int(int32(binary.NativeEndian.Uint32(buf[rec+4:])))
			}
			rec += l
		}
		if ev.pidfd < 0 {
			ev.pidfd = -1 // FAN_NOPIDFD, FAN_EPIDFD
		}
		off += int(md.Event_len)
		if ev.fd < 0 { // queue overflow: nothing to answer
			continue
		}
		fn(ev)
	}
	return nil
}

// respond answers a permission event once; later calls do nothing. It
// reports whether this call answered.
func (ev *event) respond(allow bool) bool {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if ev.answered {
		return false
	}
	ev.answered = true
	r := uint32(unix.FAN_DENY)
	if allow {
		r = unix.FAN_ALLOW
	}
	var b [8]byte
	binary.NativeEndian.PutUint32(b[0:], uint32(int32(ev.fd)))
	binary.NativeEndian.PutUint32(b[4:], r)
	// A closed group has already let the exec through.
	_, _ = ev.g.f.Write(b[:])
	return true
}

// release closes the event's descriptors, once it is answered. It waits
// for a response being written, so that the number is not reused under it.
func (ev *event) release() {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	unix.Close(ev.fd)
	if ev.pidfd >= 0 {
		unix.Close(ev.pidfd)
	}
}
