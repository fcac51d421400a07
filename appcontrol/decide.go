package appcontrol

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"warden/policy"
)

// verdict is a decision about one file for one subject, as cached.
type verdict struct {
	allow   bool
	blocked bool // denied (report says whether to audit)
	report  bool // audit it: blocked, or would have been in monitor mode
	mode    string
	policy  string
	reason  string
	sha256  string
	expires time.Time // zero: until the generation changes
	// kernel: no policy could match this file for anyone; with the
	// default allow, the kernel may answer its later execs. Once the file
	// itself is judged (markable, ignore.go), it says the file is marked.
	kernel bool
}

// decide evaluates the ApplicationControl policies for one exec.
func (c *Controller) decide(cfg *config, ev *event, sub subject, path string, st *unix.Stat_t, now time.Time) verdict {
	req := policy.Request{User: c.names.user(sub.uid, now), Groups: c.names.groupNames(sub, now),
		Machine: c.opts.Machine, Action: policy.ActionExec, Application: policy.Application{Path: path}}
	var v verdict
	if cfg.prof.SHA256 {
		sum, err := c.hashes.get(ev.fd, st)
		if err != nil {
			c.log.Warn("cannot hash the program; deciding without its sha256", "path", path, "err", err)
		}
		req.Application.SHA256, v.sha256 = sum, sum
	}
	d := cfg.ix.Evaluate(&req, now)
	v.kernel = cfg.ignoreOK && !cfg.ix.ExecMayMatch(path, req.Application.SHA256)
	v.allow, v.mode, v.policy, v.reason = d.Effective == policy.Allow, policy.StatusEnforce, d.EnforcedBy, d.Reason
	if d.EnforcedBy == "" { // no enforcing policy matched: the default
		listed := d.Policy != "" && d.Decision == policy.Allow
		switch cfg.defaultMode {
		case DefaultDeny:
			v.allow, v.reason = false, "no ApplicationControl policy allows it (applicationControl.default deny)"
		case DefaultMonitor:
			v.allow = true
			if !listed {
				v.report, v.mode, v.reason = true, policy.StatusMonitor, "monitor: no ApplicationControl policy allows it; allowed (applicationControl.default monitor)"
			}
		default:
			v.allow = true
		}
	}
	v.blocked = !v.allow
	v.report = v.report || v.blocked
	if !v.blocked && d.Policy != "" && d.Mode != policy.StatusEnforce && d.Decision == policy.Deny {
		v.report, v.mode, v.policy, v.reason = true, d.Mode, d.Policy, d.Reason
	}
	if cfg.prof.TimeWindows { // a time filter can change its mind at the next minute
		v.expires = now.Truncate(time.Minute).Add(time.Minute)
	}
	return v
}

// cacheKey is what a decision depends on: the file (device, inode, change
// time: a rewritten or re-permissioned file is a new key), the path it was
// reached by (path filters), and the subject.
type cacheKey struct {
	dev, ino uint64
	ctime    unix.Timespec
	uid, gid uint32
	groups   string
	path     string
}

// maxCached bounds a cache; a full one starts over.
const maxCached = 1 << 16

type decisionCache struct {
	mu sync.Mutex
	m  map[cacheKey]verdict
}

func newDecisionCache() *decisionCache { return &decisionCache{m: map[cacheKey]verdict{}} }

func (dc *decisionCache) get(k cacheKey, now time.Time) (verdict, bool) {
	dc.mu.Lock()
	v, ok := dc.m[k]
	dc.mu.Unlock()
	if ok && !v.expires.IsZero() && !now.Before(v.expires) {
		return v, false
	}
	return v, ok
}

func (dc *decisionCache) put(k cacheKey, v verdict) {
	dc.mu.Lock()
	if len(dc.m) >= maxCached {
		clear(dc.m)
	}
	dc.m[k] = v
	dc.mu.Unlock()
}

// fileKey names a file's content: the same device, inode, change time and
// size is the same bytes (writing a file changes its ctime).
type fileKey struct {
	dev, ino uint64
	ctime    unix.Timespec
	size     int64
}

// hashCache remembers sha256 sums across subjects and generations.
type hashCache struct {
	mu sync.Mutex
	m  map[fileKey]string
	// hashed counts the files read to hash them (cache misses).
	hashed atomic.Uint64
}

func newHashCache() *hashCache { return &hashCache{m: map[fileKey]string{}} }

// get is the sha256 of the file open as fd, read from that descriptor (the
// kernel opened it for the exec: never a path, which could be swapped).
func (h *hashCache) get(fd int, st *unix.Stat_t) (string, error) {
	k := fileKey{dev: st.Dev, ino: st.Ino, ctime: st.Ctim, size: st.Size}
	h.mu.Lock()
	sum, ok := h.m[k]
	h.mu.Unlock()
	if ok {
		return sum, nil
	}
	h.hashed.Add(1)
	hw := sha256.New()
	buf := make([]byte, 128<<10)
	var off int64
	for {
		n, err := unix.Pread(fd, buf, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", err
		}
		if n == 0 {
			break
		}
		hw.Write(buf[:n])
		off += int64(n)
	}
	sum = hex.EncodeToString(hw.Sum(nil))
	h.mu.Lock()
	if len(h.m) >= maxCached {
		clear(h.m)
	}
	h.m[k] = sum
	h.mu.Unlock()
	return sum, nil
}
