package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"warden/audit"
)

// tlsListener accepts TCP connections and hands mochi TLS server
// connections that the broker tracks, with a deadline on the handshake
// and CONNECT.
type tlsListener struct {
	net.Listener
	cfg *tls.Config
	b   *Broker
}

// Accept retries transient errors (such as running out of file
// descriptors) itself: mochi stops serving a listener at the first error.
func (l *tlsListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.b.isClosed() {
				return nil, err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.b.log.Warn("accept failed", "err", err, "retry", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		_ = raw.SetDeadline(time.Now().Add(connectTimeout))
		c := &conn{Conn: tls.Server(raw, l.cfg), b: l.b}
		if !l.b.track(c) {
			raw.Close()
			return nil, net.ErrClosed
		}
		return c, nil
	}
}

// conn is a client connection: TLS, tracked by the broker, carrying the
// session the CONNECT established.
type conn struct {
	*tls.Conn
	b *Broker

	once  sync.Once
	hsErr error

	sess atomic.Pointer[session]

	// counted is the identity this connection's session is counted for
	// (sessions.go), "" when none; both fields are guarded by b.mu.
	counted      string
	countedAdmin bool
}

// session is what the broker knows about the client on a connection.
// It is replaced, never modified.
type session struct {
	cl     *mqtt.Client
	serial string  // of the peer certificate, "" when none was presented
	grants *grants // nil until the CONNECT is accepted
}

// Read completes the handshake first, so a failed one is audited with the
// peer's address while the socket may still be found.
func (c *conn) Read(p []byte) (int, error) {
	if err := c.handshake(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *conn) handshake() error {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
		defer cancel()
		if err := c.HandshakeContext(ctx); err != nil {
			c.hsErr = err
			if !c.b.isClosed() {
				c.b.refuse(c, refusal{typ: audit.ProcessAuthenticationFailed,
					reason: "TLS handshake failed: " + err.Error(), key: "handshake"})
			}
		}
	})
	return c.hsErr
}

// Close untracks the connection; mochi closes every connection it ends.
func (c *conn) Close() error {
	c.b.untrack(c)
	return c.Conn.Close()
}

// addrs returns the connection's local and remote address for a peer
// lookup.
func (c *conn) addrs() (local, remote netip.AddrPort, ok bool) {
	la, err1 := netip.ParseAddrPort(c.LocalAddr().String())
	ra, err2 := netip.ParseAddrPort(c.RemoteAddr().String())
	return la, ra, err1 == nil && err2 == nil
}
