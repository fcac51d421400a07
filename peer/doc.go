// Package peer finds, best effort, the local process at the other end of a
// loopback TCP connection so that audit records of refused callers can name
// it. Its answer is a clue for the record, never a credential: nothing may
// be allowed because of what Lookup returns.
package peer

import (
	"errors"
	"fmt"
)

// Process is the owner of the peer's socket.
type Process struct {
	PID int    // 0 when the socket was found but not its process
	Exe string // target of /proc/PID/exe; empty when unreadable
	UID int    // owner of the socket, from /proc/net/tcp*; -1 when unknown
}

func (p Process) String() string {
	return fmt.Sprintf("pid=%d uid=%d exe=%q", p.PID, p.UID, p.Exe)
}

var (
	// ErrNotLoopback: only loopback connections are looked up.
	ErrNotLoopback = errors.New("peer: not a loopback connection")
	// ErrNotFound: no socket matches the connection (it closed, or it lives
	// in another network namespace).
	ErrNotFound = errors.New("peer: connection not found")
	// ErrProcessNotFound: the socket was found but no process holding it
	// was (another user's process while not root, it exited, or the scan
	// limit was reached). The Process returned still carries the UID.
	ErrProcessNotFound = errors.New("peer: process not found")
	// ErrUnsupported: this platform has no /proc to read.
	ErrUnsupported = errors.New("peer: lookup not supported on this platform")
)
