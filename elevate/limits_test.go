package elevate_test

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"warden/audit"
	"warden/elevate/wire"
)

// TestOversizedAndSlowClientsAreDropped: a message over 64 KiB, or no
// message in time, ends the connection and is audited.
func TestOversizedAndSlowClientsAreDropped(t *testing.T) {
	a := startAgent(t)
	sock := filepath.Join(a.root, wire.SocketPath)
	dial := func() *net.UnixConn {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: sock, Net: "unixpacket"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	big := dial()
	msg := `{"v":1,"type":"elevate","argv":["/usr/bin/id","` + strings.Repeat("x", wire.MaxMessage) + `"]}`
	if _, err := big.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	a.waitEvent(t, audit.AuthorizationFailed, func(e audit.Event) bool {
		return strings.Contains(e.Details["reason"].(string), "larger than")
	})
	big.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1024)
	n, _ := big.Read(buf)
	if !strings.Contains(string(buf[:n]), "larger than") {
		t.Fatalf("answer to an oversized message = %q", buf[:n])
	}
	if n, err := big.Read(buf); n != 0 || err == nil && n > 0 {
		t.Fatalf("connection still open after an oversized message: %q %v", buf[:n], err)
	}

	slow := dial()
	start := time.Now()
	slow.SetReadDeadline(time.Now().Add(15 * time.Second))
	n, _ = slow.Read(buf)
	if took := time.Since(start); took > 10*time.Second || !strings.Contains(string(buf[:n]), "slow client") {
		t.Fatalf("silent client: after %s got %q; want dropped as slow within the deadline", took, buf[:n])
	}
	a.waitEvent(t, audit.AuthorizationFailed, func(e audit.Event) bool {
		return strings.Contains(e.Details["reason"].(string), "slow client")
	})
}
