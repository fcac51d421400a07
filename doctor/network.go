package doctor

import (
	"bufio"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// checkListeners reads /proc/net/tcp and tcp6 (not the configuration) and
// fails when any socket the agent listens on is not on loopback.
func checkListeners(e *Env) Result {
	if e.AgentPID == 0 {
		return skip("agent not running")
	}
	inodes, err := socketInodes(filepath.Join(e.Proc, itoa(e.AgentPID), "fd"))
	if err != nil {
		return warn(fmt.Sprintf("cannot read the agent's sockets: %v", err), "run `sudo warden doctor`")
	}
	var open, exposed []string
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		ls, err := listeners(filepath.Join(e.Proc, itoa(e.AgentPID), f))
		if err != nil {
			continue
		}
		for _, l := range ls {
			if !inodes[l.inode] {
				continue
			}
			open = append(open, l.addr.String())
			if !l.addr.Addr().IsLoopback() {
				exposed = append(exposed, l.addr.String())
			}
		}
	}
	sort.Strings(open)
	if len(exposed) > 0 {
		return fail("the agent listens beyond loopback: "+strings.Join(exposed, ", "), "listen on 127.0.0.1 only: remove the --listen-* flags from /etc/default/warden and restart")
	}
	if len(open) == 0 {
		return warn("found no listening socket of the agent", "check that the agent serves: `warden status`")
	}
	return pass("loopback only: " + strings.Join(open, ", "))
}

type listener struct {
	addr  netip.AddrPort
	inode string
}

// listeners parses a /proc/net/tcp{,6} table for sockets in LISTEN (0A).
func listeners(path string) ([]listener, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []listener
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 10 || fs[3] != "0A" {
			continue
		}
		ap, err := parseProcAddr(fs[1])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, listener{addr: ap, inode: fs[9]})
	}
	return out, sc.Err()
}

// parseProcAddr decodes "0100007F:1AE9" (IPv4) or the 32-hex-digit IPv6
// form: the address is in host byte order, 32 bits at a time.
func parseProcAddr(s string) (netip.AddrPort, error) {
	hexIP, hexPort, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(hexIP)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 { // little-endian words on the machines warden runs on
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	port, err := strconv.ParseUint(hexPort, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// socketInodes lists the socket inodes a process holds open.
func socketInodes(fdDir string) (map[string]bool, error) {
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, ent := range ents {
		l, err := os.Readlink(filepath.Join(fdDir, ent.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			out[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	return out, nil
}

// checkTLS makes real handshakes with the API: TLS 1.1 must be refused,
// TLS 1.2 accepted (the page: TLS 1.2 or 1.3 only).
func checkTLS(e *Env) Result {
	if e.APIAddr == "" {
		return skip("agent not running")
	}
	hs := func(v uint16) error {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", e.APIAddr, &tls.Config{MinVersion: v, MaxVersion: v, InsecureSkipVerify: true, ServerName: "localhost"}) //nolint:gosec // only the protocol version is under test
		if err == nil {
			c.Close()
		}
		return err
	}
	if hs(tls.VersionTLS11) == nil {
		return fail("the API at "+e.APIAddr+" accepted a TLS 1.1 handshake", "upgrade warden: the agent must refuse TLS below 1.2")
	}
	if err := hs(tls.VersionTLS12); err != nil {
		return warn(fmt.Sprintf("TLS 1.1 refused, but a TLS 1.2 handshake failed too: %v", err), "check the agent's certificate: `warden status`")
	}
	return pass("TLS 1.1 refused, TLS 1.2 accepted at " + e.APIAddr)
}
