package appcontrol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// group is one fanotify group (one file descriptor) with its marks.
// Closing it drops the marks; the kernel answers the events still waiting
// for it with allow.
//
// The descriptor is blocking and read by one goroutine locked to its
// thread, sleeping in poll(2) on it and on an eventfd that close uses to
// wake it: the kernel wakes that thread directly when an exec waits,
// without a hop through Go's network poller, which costs more than the
// whole decision on a busy machine.
type group struct {
	fd     int
	wake   int  // eventfd: close writes it, the reader returns
	pidfd  bool // events carry a pidfd (FAN_REPORT_PIDFD)
	mounts []string

	mu     sync.RWMutex // writers of responses and marks hold it shared; closing, exclusive
	closed bool

	ignoreKind ignoreKind
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
// the kernel can (5.15 and later) and marks the filesystem of each mount
// point for exec permission events. Every path must be a mount point:
// marking "the filesystem that holds this folder" by mistake could be the
// root filesystem.
//
// The mark is on the filesystem (FAN_MARK_FILESYSTEM), not the mount: a
// mount mark belongs to one mount, and the copies of it that a new mount
// namespace gets carry none, so any user allowed to create a user
// namespace ran anything unseen with `unshare -Urm` (a bind mount of the
// same folder elsewhere too). A filesystem mark sees every exec of a file
// of that filesystem, through whichever mount, in every namespace.
func openGroup(mounts []string) (*group, error) {
	const flags = unix.FAN_CLASS_CONTENT | unix.FAN_CLOEXEC | unix.FAN_UNLIMITED_QUEUE
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
	g.fd = fd
	if g.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	for _, m := range mounts {
		if err := checkMountPoint(m); err != nil {
			g.release()
			return nil, err
		}
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, m); err != nil {
			g.release()
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

// close asks the reader to stop; the reader releases the descriptors.
func (g *group) close() {
	var one [8]byte
	one[0] = 1
	unix.Write(g.wake, one[:])
}

// release closes the descriptors: the marks go, and the kernel lets every
// exec still waiting for this group run.
func (g *group) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed {
		g.closed = true
		unix.Close(g.fd)
		unix.Close(g.wake)
	}
}

// serve reads events and calls fn for each until close is called, then
// releases the group. It holds its OS thread throughout, raised to nice
// -10: every exec on the watched mounts waits for this thread, and on a
// busy machine a thread of ordinary priority waits for a CPU longer than
// it takes to answer. The thread is not unlocked: it ends with the
// goroutine, so its priority goes with it.
func (g *group) serve(fn func(*event), onErr func(error)) {
	runtime.LockOSThread()
	_ = unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), -10) // best effort
	defer g.release()
	buf := make([]byte, 64<<10)
	fds := []unix.PollFd{{Fd: int32(g.fd), Events: unix.POLLIN}, {Fd: int32(g.wake), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil {
			if err == unix.EINTR {
				continue
			}
			onErr(fmt.Errorf("poll: %w", err))
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&unix.POLLIN == 0 {
			continue
		}
		n, err := unix.Read(g.fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err == unix.EBADF {
			onErr(fmt.Errorf("read: %w", err))
			return
		}
		if err != nil { // EMFILE and the like: the kernel keeps the event for the next read
			onErr(fmt.Errorf("read: %w", err))
			time.Sleep(time.Millisecond)
			continue
		}
		if err := parse(g, buf[:n], fn); err != nil {
			onErr(err)
		}
	}
}

// parse calls fn for each event in buf.
func parse(g *group, buf []byte, fn func(*event)) error {
	n := len(buf)
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
	ev.g.mu.RLock()
	if !ev.g.closed {
		_, _ = unix.Write(ev.g.fd, b[:])
	}
	ev.g.mu.RUnlock()
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
