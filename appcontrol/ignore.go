package appcontrol

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Letting the kernel answer by itself.
//
// Every exec on a watched mount is a permission event: the kernel holds
// the process until the agent's reader thread has read the event and
// written an answer, even when the answer comes from the decision cache.
// That round trip is most of what application control costs an exec. For
// a file whose answer is "allow" for everyone, forever (until the policies
// change), the controller puts a fanotify ignore mark on its inode: an
// inode mark of this group whose ignore mask holds the exec events, so the
// kernel lets later execs of that inode through without an event.
//
// An ignore mark is about an inode, not a path, a user or a time, so it is
// set only when the decision cannot depend on any of those, and the inode
// cannot be made to mean something else:
//
//   - No ApplicationControl policy that is not off could match the file,
//     for any user, group, machine or time (policy.Index.ExecMayMatch: path,
//     folder and sha256 judged, the rest assumed to match), and
//     applicationControl.default is "allow". A decision that some policy
//     made (even allow), one under a monitor mode that must audit every
//     exec, an allow-list default, a fallback answer, the agent's own
//     execs: none gets a mark.
//   - The content cannot change under the mark. The mark is set without
//     FAN_MARK_IGNORED_SURV_MODIFY, so the kernel clears the ignore mask at
//     the first write to the file (truncate included) and its execs come
//     back to the agent, whose cache key (the change time) sees a new
//     file. Only root can write the file: it is owned by root and not
//     writable by group or others (the group bits are the ACL mask, so no
//     ACL entry grants write either). A write that lands between the
//     decision and the mark is caught by stat-ing the file again after
//     marking and removing the mark when its change time moved.
//   - The path the decision was made for is the file's only name, and no
//     one but root can give it another: a path or folder policy ("deny
//     /home/*/bin") must not be bypassed by executing the same inode under
//     a name the policy names. So the file has one link; fs.protected_hardlinks
//     is 1, so a user cannot make a second link to a file they do not own
//     and cannot write; and every folder on the path, from /, is owned by
//     root and not writable by group or others, or sticky (then only root
//     renames a root-owned entry), so no one else can rename the file or
//     any folder above it. The path is walked down from / without following
//     symbolic links and must lead to the same inode. A user-owned file never
//     gets a mark.
//
// Marks go with everything they were decided under: a new generation
// (policies, Settings) flushes all of them before its policies decide, and
// so does reaching maxIgnoreMarks. They are evictable (FAN_MARK_EVICTABLE,
// Linux 5.19+): the kernel may drop one with its inode under memory
// pressure, after which the exec simply comes back to the agent.
//
// What this does not cover, and why that is acceptable:
//
//   - Root changing the owner or mode of a marked file, linking it
//     elsewhere, or rewriting it through a shared writable mapping (page
//     writes send no modify event), leaves the mark until the next
//     write, generation or flush. Only root can do any of these to a file
//     that qualifies, and root can change the policies, or stop the agent.
//   - A user allowed to create user namespaces can bind-mount a file they
//     can read under another name in a mount namespace of their own, and
//     the filesystem mark sees execs there. Through a marked inode that
//     alias runs without the agent. It runs the same file, as the same
//     user, that every policy allows that user to run by its own name
//     (argv[0] is the caller's to choose anyway), so it gains nothing;
//     without marks the same alias already defeats path filters, which is
//     why docs/application-control.md says to deny a program by sha256.

// ignoreMask is what an ignore mark lets the kernel answer: the permission
// event and the notification that goes with it.
const ignoreMask = unix.FAN_OPEN_EXEC_PERM | unix.FAN_OPEN_EXEC

// maxIgnoreMarks bounds the ignore marks of a group; at the bound they are
// all flushed and set again as files are executed.
const maxIgnoreMarks = 16384

// protectedHardlinks is the sysctl read at every generation.
const protectedHardlinks = "/proc/sys/fs/protected_hardlinks"

// hardlinksProtected reports whether the kernel refuses a user a hard link
// to a file they neither own nor can read and write.
func hardlinksProtected(file string) bool {
	data, err := os.ReadFile(file)
	return err == nil && string(bytes.TrimSpace(data)) == "1"
}

// ignoreFlags are the fanotify_mark flags that add an evictable ignore
// mark, newest kernel first: FAN_MARK_IGNORE (6.0), FAN_MARK_EVICTABLE
// (5.19), FAN_MARK_IGNORED_MASK. None holds FAN_MARK_IGNORED_SURV_MODIFY.
var ignoreFlags = []uint{
	unix.FAN_MARK_IGNORE | unix.FAN_MARK_EVICTABLE,
	unix.FAN_MARK_IGNORED_MASK | unix.FAN_MARK_EVICTABLE,
	unix.FAN_MARK_IGNORED_MASK,
}

// ignoreKind is the index in ignoreFlags of the flags this kernel takes
// (len(ignoreFlags): none), found by the first mark.
type ignoreKind struct{ i atomic.Int32 }

// ignore puts an ignore mark on the inode open as fd. It returns false
// when the group is closed or the kernel refuses.
func (g *group) ignore(fd int) bool {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return false
	}
	for i := int(g.ignoreKind.i.Load()); i < len(ignoreFlags); i++ {
		err := unix.FanotifyMark(g.fd, unix.FAN_MARK_ADD|ignoreFlags[i], ignoreMask, fd, "")
		if err == nil {
			g.ignoreKind.i.Store(int32(i))
			return true
		}
		if !errors.Is(err, unix.EINVAL) {
			return false
		}
	}
	g.ignoreKind.i.Store(int32(len(ignoreFlags))) // this kernel has none: stop asking
	return false
}

// canIgnore reports whether this kernel took, or may take, ignore marks.
func (g *group) canIgnore() bool { return int(g.ignoreKind.i.Load()) < len(ignoreFlags) }

// unignore removes the ignore mark on the inode open as fd.
func (g *group) unignore(fd int) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if i := int(g.ignoreKind.i.Load()); !g.closed && i < len(ignoreFlags) {
		f := ignoreFlags[i] &^ unix.FAN_MARK_EVICTABLE
		_ = unix.FanotifyMark(g.fd, unix.FAN_MARK_REMOVE|f, ignoreMask, fd, "")
	}
}

// flushInodeMarks removes every inode mark of the group, which are the
// ignore marks (the watched mounts are mount marks, which stay).
func (g *group) flushInodeMarks() error {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if g.closed {
		return nil
	}
	return unix.FanotifyMark(g.fd, unix.FAN_MARK_FLUSH, 0, unix.AT_FDCWD, "")
}

// flushIgnores drops every ignore mark of the current group. The caller
// holds c.markMu.
func (c *Controller) flushIgnores() error {
	c.mu.Lock()
	g := c.grp
	c.mu.Unlock()
	if g == nil || c.ignores == 0 {
		c.ignores = 0
		return nil
	}
	if err := g.flushInodeMarks(); err != nil {
		return fmt.Errorf("fanotify: flush ignore marks: %w", err)
	}
	c.ignores = 0
	c.stats.IgnoreFlushes.Add(1)
	return nil
}

// markable reports whether the kernel may answer every later exec of the
// file (device and inode of st, reached by path) with the verdict v, which
// cfg decided (see the top of this file). It is judged once per decision;
// the verdict keeps the answer, so that a file that lost its mark (the
// bound, memory pressure) is marked again at its next exec.
func markable(cfg *config, path string, st *unix.Stat_t, v verdict) bool {
	return v.kernel && v.allow && !v.report && cfg.ignoreOK && stableFile(st) && stableName(path, st)
}

// kernelAnswers puts an ignore mark on the file of ev, whose verdict under
// cfg is markable, unless a newer generation is in force. It runs after
// the exec was answered, while ev's descriptor is open.
func (c *Controller) kernelAnswers(cfg *config, ev *event, st *unix.Stat_t) {
	c.markMu.Lock()
	if c.cur.Load() != cfg { // a newer generation has flushed, or will
		c.markMu.Unlock()
		return
	}
	if c.ignores >= c.maxIgnores && c.flushIgnores() != nil {
		c.markMu.Unlock()
		return
	}
	ok := ev.g.ignore(ev.fd)
	if ok {
		c.ignores++
	}
	c.markMu.Unlock()
	if !ok {
		return
	}
	// A write between the decision and the mark cleared no mask (there
	// was none yet) but moved the change time: take the mark back.
	var now unix.Stat_t
	if unix.Fstat(ev.fd, &now) != nil || now.Ctim != st.Ctim || now.Size != st.Size || now.Mode != st.Mode || now.Uid != st.Uid {
		ev.g.unignore(ev.fd)
		return
	}
	c.stats.IgnoreMarks.Add(1)
}

// stableFile: a regular file with one name, that only root can write.
func stableFile(st *unix.Stat_t) bool {
	return st.Mode&unix.S_IFMT == unix.S_IFREG && st.Uid == 0 && st.Mode&0o022 == 0 && st.Nlink == 1
}

// stableName reports whether path leads to the inode st from / through
// folders that only root can change: owned by root and not writable by
// group or others, or sticky. No symbolic link is followed.
func stableName(path string, st *unix.Stat_t) bool {
	if !strings.HasPrefix(path, "/") {
		return false
	}
	parts := strings.Split(path[1:], "/")
	dir, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer func() { unix.Close(dir) }()
	for i, name := range parts {
		if name == "" || name == "." || name == ".." {
			return false
		}
		var ds unix.Stat_t
		if unix.Fstat(dir, &ds) != nil || ds.Uid != 0 || (ds.Mode&0o022 != 0 && ds.Mode&unix.S_ISVTX == 0) {
			return false
		}
		if i == len(parts)-1 {
			var fs unix.Stat_t
			return unix.Fstatat(dir, name, &fs, unix.AT_SYMLINK_NOFOLLOW) == nil && fs.Dev == st.Dev && fs.Ino == st.Ino
		}
		next, err := unix.Openat(dir, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return false
		}
		unix.Close(dir)
		dir = next
	}
	return false
}
