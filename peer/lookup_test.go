//go:build linux

package peer

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"testing"
)

// TestMain lets the test binary act as a client process for
// TestLookupFindsChildProcess: it dials, then holds the connection until
// its stdin closes.
func TestMain(m *testing.M) {
	if addr := os.Getenv("PEER_TEST_DIAL"); addr != "" {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			os.Exit(3)
		}
		io.Copy(io.Discard, os.Stdin)
		c.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// connect makes a real loopback connection from this process and returns
// the server side's view of it.
func connect(t *testing.T, network, addr string) (local, remote netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen %s %s: %v", network, addr, err)
	}
	defer ln.Close()
	client, err := net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server.LocalAddr().(*net.TCPAddr).AddrPort(), server.RemoteAddr().(*net.TCPAddr).AddrPort()
}

func TestLookupFindsThisProcess(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, network, addr string }{
		{"IPv4", "tcp4", "127.0.0.1:0"},
		{"IPv6", "tcp6", "[::1]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			local, remote := connect(t, tt.network, tt.addr)
			got, err := Lookup(local, remote)
			if err != nil {
				t.Fatalf("Lookup(%s, %s): %v", local, remote, err)
			}
			want := Process{PID: os.Getpid(), Exe: exe, UID: os.Getuid()}
			if got != want {
				t.Errorf("Lookup = %v, want %v", got, want)
			}
		})
	}
}

func TestLookupRefusals(t *testing.T) {
	local, remote := connect(t, "tcp4", "127.0.0.1:0")
	tests := []struct {
		name          string
		local, remote netip.AddrPort
		want          error
	}{
		{"not loopback", netip.MustParseAddrPort("192.0.2.1:6889"), remote, ErrNotLoopback},
		{"no such connection", local, netip.AddrPortFrom(remote.Addr(), remote.Port()+1), ErrNotFound},
		// The server's own socket is not the peer: swapping the ends
		// must not find the client.
		{"server side is not the peer", remote, netip.MustParseAddrPort("127.0.0.1:1"), ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Lookup(tt.local, tt.remote)
			if !errors.Is(err, tt.want) || p.PID != 0 {
				t.Errorf("Lookup = %v, %v; want PID 0 and %v", p, err, tt.want)
			}
		})
	}
}

func TestParseNetLine(t *testing.T) {
	tests := []struct {
		name, line        string
		wantLocal, wantRm string
		wantUID           int
		wantInode         uint64
	}{
		{"IPv4",
			"   3: 0100007F:A1B2 0100007F:1AE9 01 00000000:00000000 00:00000000 00000000  1000        0 424242 1 0000000000000000 20 4 30 10 -1",
			"127.0.0.1:41394", "127.0.0.1:6889", 1000, 424242},
		{"IPv6 loopback",
			"   0: 00000000000000000000000001000000:D431 00000000000000000000000001000000:1AE9 01 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 20 4 30 10 -1",
			"[::1]:54321", "[::1]:6889", 0, 77},
		{"v4-mapped in tcp6",
			"   1: 0000000000000000FFFF00000100007F:D431 0000000000000000FFFF00000100007F:1AE9 01 00000000:00000000 00:00000000 00000000     0        0 78 1 0000000000000000 20 4 30 10 -1",
			"127.0.0.1:54321", "127.0.0.1:6889", 0, 78},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := parseNetLine(tt.line)
			if !ok {
				t.Fatal("not parsed")
			}
			if e.local.String() != tt.wantLocal || e.remote.String() != tt.wantRm || e.uid != tt.wantUID || e.inode != tt.wantInode {
				t.Errorf("got %s -> %s uid %d inode %d, want %s -> %s uid %d inode %d",
					e.local, e.remote, e.uid, e.inode, tt.wantLocal, tt.wantRm, tt.wantUID, tt.wantInode)
			}
		})
	}
	for _, bad := range []string{"", "sl local rem", "  0: ZZ:1 0100007F:1 01 0:0 0:0 0 0 0 1"} {
		if _, ok := parseNetLine(bad); ok {
			t.Errorf("parseNetLine(%q) ok, want refused", bad)
		}
	}
}

func TestLookupFindsChildProcess(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "PEER_TEST_DIAL="+ln.Addr().String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got, err := Lookup(conn.LocalAddr().(*net.TCPAddr).AddrPort(), conn.RemoteAddr().(*net.TCPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	if got.PID != cmd.Process.Pid || got.Exe != exe {
		t.Errorf("Lookup = %v, want pid %d exe %q", got, cmd.Process.Pid, exe)
	}
}
