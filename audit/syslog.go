package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"warden/schema"
	"warden/state"
)

// Syslog forwarding tuning.
const (
	syslogDialTimeout  = 10 * time.Second
	syslogWriteTimeout = 10 * time.Second
	// syslogSettle is how long bytes the receiver's kernel acknowledged
	// must stay unchallenged (the connection alive) before they count as
	// delivered. TCP syslog has no application acknowledgement: a receiver
	// killed with events in its socket buffer or memory queue loses them,
	// and the reset that follows makes the forwarder send them again.
	syslogSettle = 2 * time.Second
	// forwardCursorKey prefixes the Status record of a syslog target's cursor.
	forwardCursorKey = "audit-forward/"
)

// syslogTarget sends RFC 5424 messages over TCP with octet-counting
// framing (RFC 6587 3.4.1, RFC 5425), TLS unless tls is false.
type syslogTarget struct {
	cfg   schema.AuditForward
	store *state.Store
	tls   bool
	cef   bool
	pid   string
}

func newSyslogTarget(c schema.AuditForward, store *state.Store) (*syslogTarget, error) {
	if _, _, err := net.SplitHostPort(c.Address); err != nil {
		return nil, fmt.Errorf("address %q: %w", c.Address, err)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("certFile and keyFile go together")
	}
	return &syslogTarget{cfg: c, store: store, tls: c.TLS == nil || *c.TLS, cef: c.Format == "cef",
		pid: strconv.Itoa(os.Getpid())}, nil
}

func (t *syslogTarget) cursorKey() string { return forwardCursorKey + "syslog/" + t.cfg.Address }

func (t *syslogTarget) loadCursor() (uint64, error) {
	var c struct {
		Seq uint64 `json:"seq"`
	}
	_, err := t.store.Get(state.Status, t.cursorKey(), &c)
	return c.Seq, err
}

func (t *syslogTarget) saveCursor(seq uint64) error {
	return t.store.Put(state.Status, t.cursorKey(), map[string]any{"seq": seq, "at": time.Now().UTC()})
}

// tlsConfig is read at every connection, so a renewed CA file or client
// certificate is picked up without a restart.
func (t *syslogTarget) tlsConfig() (*tls.Config, error) {
	host, _, _ := net.SplitHostPort(t.cfg.Address)
	conf := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if t.cfg.ServerName != "" {
		conf.ServerName = t.cfg.ServerName
	}
	if t.cfg.CAFile != "" {
		pem, err := os.ReadFile(t.cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("caFile: %w", err)
		}
		conf.RootCAs = x509.NewCertPool()
		if !conf.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("caFile %s: no PEM certificate", t.cfg.CAFile)
		}
	}
	if t.cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.cfg.CertFile, t.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

func (t *syslogTarget) open(ctx context.Context) (sink, error) {
	d := net.Dialer{Timeout: syslogDialTimeout, KeepAlive: 30 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", t.cfg.Address)
	if err != nil {
		return nil, err
	}
	conn := raw
	if t.tls {
		conf, err := t.tlsConfig()
		if err != nil {
			raw.Close()
			return nil, err
		}
		tc := tls.Client(raw, conf)
		hctx, cancel := context.WithTimeout(ctx, syslogDialTimeout)
		err = tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("tls: %w", err)
		}
		conn = tc
	}
	s := &syslogSink{t: t, conn: conn, tcp: raw.(*net.TCPConn), gone: make(chan struct{})}
	// A write blocked on a full network buffer ends when the run does.
	s.stopClose = context.AfterFunc(ctx, func() { conn.Close() })
	go s.watch()
	return s, nil
}

// syslogSink is one connection. A receiver never sends anything, so a
// read that returns means the connection is closed.
type syslogSink struct {
	t    *syslogTarget
	conn net.Conn
	tcp  *net.TCPConn
	buf  []byte

	gone      chan struct{}
	goneOnce  sync.Once
	stopClose func() bool

	pending []pendingBatch // sent, not yet confirmed, oldest first
}

type pendingBatch struct {
	seq     uint64
	ackedAt time.Time // zero until the receiver's kernel acknowledged it
}

func (s *syslogSink) watch() {
	var b [1]byte
	for {
		if _, err := s.conn.Read(b[:]); err != nil {
			s.goneOnce.Do(func() { close(s.gone) })
			return
		}
	}
}

func (s *syslogSink) dead() <-chan struct{} { return s.gone }

func (s *syslogSink) send(evs []Event) error {
	s.buf = s.buf[:0]
	for i := range evs {
		s.buf = frame(s.buf, s.t.message(&evs[i]))
	}
	s.conn.SetWriteDeadline(time.Now().Add(syslogWriteTimeout))
	if _, err := s.conn.Write(s.buf); err != nil {
		return err
	}
	s.pending = append(s.pending, pendingBatch{seq: evs[len(evs)-1].Seq})
	return nil
}

// confirmed marks what the receiver's kernel has acknowledged (the send
// queue is empty) and returns the newest batch acknowledged at least
// syslogSettle ago on a connection that is still open.
func (s *syslogSink) confirmed(now time.Time) (uint64, error) {
	select {
	case <-s.gone:
		return 0, errors.New("connection closed by the receiver")
	default:
	}
	if len(s.pending) == 0 {
		return 0, nil
	}
	if unacked, err := s.unacked(); err != nil {
		return 0, err
	} else if unacked == 0 {
		for i := range s.pending {
			if s.pending[i].ackedAt.IsZero() {
				s.pending[i].ackedAt = now
			}
		}
	}
	var seq uint64
	n := 0
	for _, p := range s.pending {
		if p.ackedAt.IsZero() || now.Sub(p.ackedAt) < syslogSettle {
			break
		}
		seq = p.seq
		n++
	}
	s.pending = s.pending[n:]
	return seq, nil
}

// unacked is the bytes in the socket's send queue the peer has not
// acknowledged (SIOCOUTQ).
func (s *syslogSink) unacked() (int, error) {
	rc, err := s.tcp.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		return 0, err
	}
	return n, ierr
}

func (s *syslogSink) close() error {
	s.stopClose()
	s.goneOnce.Do(func() { close(s.gone) })
	return s.conn.Close()
}

// frame appends msg with octet-counting framing: "LEN SP MSG".
func frame(dst, msg []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}
