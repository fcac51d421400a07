package peer

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Bounds on the work one Lookup does, so a busy machine or a flood of
// refused connections cannot make auditing expensive.
const (
	maxNetLines = 1 << 18 // lines read from /proc/net/tcp and tcp6
	maxFDs      = 1 << 17 // fd links read in /proc/*/fd
)

var procRoot = "/proc"

// Lookup finds the process holding the client side of the loopback TCP
// connection seen by a server as local (its own address) and remote (the
// client's). It reads /proc/net/tcp or tcp6 for the client socket's inode and
// owner, then /proc/*/fd for a process holding it, processes of the socket's
// owner first, within fixed bounds.
func Lookup(local, remote netip.AddrPort) (Process, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	if !local.Addr().IsLoopback() || !remote.Addr().IsLoopback() {
		return Process{UID: -1}, ErrNotLoopback
	}
	inode, uid, err := findSocket(remote, local)
	if err != nil {
		return Process{UID: -1}, err
	}
	p := Process{UID: uid}
	pid, ok := findPID(inode, uid)
	if !ok {
		return p, fmt.Errorf("%w: socket inode %d of uid %d", ErrProcessNotFound, inode, uid)
	}
	p.PID = pid
	p.Exe, _ = os.Readlink(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
	return p, nil
}

// findSocket returns the inode and owner of the socket whose own address is
// self and whose peer is other.
func findSocket(self, other netip.AddrPort) (inode uint64, uid int, err error) {
	files := []string{"tcp6"}
	if self.Addr().Is4() {
		files = []string{"tcp", "tcp6"} // tcp6 holds v4-mapped dual-stack sockets
	}
	budget := maxNetLines
	for _, name := range files {
		f, err := os.Open(filepath.Join(procRoot, "net", name))
		if err != nil {
			continue
		}
		inode, uid, found := scanNet(f, self, other, &budget)
		f.Close()
		if found {
			return inode, uid, nil
		}
	}
	return 0, -1, fmt.Errorf("%w: %s -> %s", ErrNotFound, self, other)
}

func scanNet(f *os.File, self, other netip.AddrPort, budget *int) (inode uint64, uid int, found bool) {
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		if *budget--; *budget < 0 {
			return 0, 0, false
		}
		e, ok := parseNetLine(sc.Text())
		if ok && e.inode != 0 && e.local == self && e.remote == other {
			return e.inode, e.uid, true
		}
	}
	return 0, 0, false
}

type netEntry struct {
	local, remote netip.AddrPort
	uid           int
	inode         uint64
}

// parseNetLine reads one line of /proc/net/tcp or tcp6:
//
//	sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
//
// Addresses are unmapped, so a v4-mapped entry compares equal to its v4 form.
func parseNetLine(line string) (netEntry, bool) {
	fields := strings.Fields(line)
	if len(fields) < 10 {
		return netEntry{}, false
	}
	local, ok1 := parseHexAddr(fields[1])
	remote, ok2 := parseHexAddr(fields[2])
	uid, err1 := strconv.Atoi(fields[7])
	inode, err2 := strconv.ParseUint(fields[9], 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return netEntry{}, false
	}
	return netEntry{local: local, remote: remote, uid: uid, inode: inode}, true
}

// parseHexAddr decodes "0100007F:1F90": the address is printed as 32-bit
// words in the kernel's byte order, the port in host order.
func parseHexAddr(s string) (netip.AddrPort, bool) {
	addrHex, portHex, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, false
	}
	raw, err := hex.DecodeString(addrHex)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(portHex, 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), true
}

// findPID scans /proc/*/fd for "socket:[inode]", processes owned by uid
// first (the socket's creator is almost always its holder).
func findPID(inode uint64, uid int) (int, bool) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, false
	}
	type proc struct {
		pid  int
		mine bool
	}
	var procs []proc
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		mine := false
		if fi, err := os.Stat(filepath.Join(procRoot, e.Name())); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				mine = int(st.Uid) == uid
			}
		}
		procs = append(procs, proc{pid, mine})
	}
	slices.SortStableFunc(procs, func(a, b proc) int {
		switch {
		case a.mine == b.mine:
			return 0
		case a.mine:
			return -1
		}
		return 1
	})
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	budget := maxFDs
	for _, p := range procs {
		if holds(p.pid, want, &budget) {
			return p.pid, true
		}
		if budget <= 0 {
			break
		}
	}
	return 0, false
}

func holds(pid int, want string, budget *int) bool {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "fd")
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false // gone, or another user's while not root
	}
	for _, fd := range fds {
		if *budget--; *budget < 0 {
			return false
		}
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && target == want {
			return true
		}
	}
	return false
}
