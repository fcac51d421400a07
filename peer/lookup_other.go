//go:build !linux

package peer

import "net/netip"

// Lookup is only implemented on Linux; elsewhere it reports ErrUnsupported.
func Lookup(local, remote netip.AddrPort) (Process, error) {
	return Process{UID: -1}, ErrUnsupported
}
