package pki

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrListenAddr is the refusal of a listen address other than
// 127.0.0.1:PORT.
var ErrListenAddr = errors.New("listen address must be 127.0.0.1:PORT (loopback; the address the server certificate names)")

// ListenIP is the one address every listener of the agent binds: the API,
// the health port and the broker. The server certificate names it (and
// localhost); any other loopback address ([::1], 127.0.0.2) would fail
// certificate checks or be a second way in that the rest of the code does
// not expect, so all three listeners follow this one rule.
var ListenIP = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// CheckListenAddr refuses any listen address but 127.0.0.1:PORT (port 0
// picks a free port).
func CheckListenAddr(addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Addr() != ListenIP {
		return fmt.Errorf("%w, not %q", ErrListenAddr, addr)
	}
	return nil
}
