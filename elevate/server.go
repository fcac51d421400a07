package elevate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"warden/audit"
	"warden/elevate/wire"
	"warden/engine"
	"warden/policy"
)

// Engine is what the socket needs from the policy engine. The agent wires
// it to *engine.Engine, naming the Actor as the kernel-attested caller.
type Engine interface {
	// Evaluate is engine.EvaluateDeferred: the evaluation is stored by
	// record, which the caller calls on every path before the answer has
	// any effect.
	Evaluate(ctx context.Context, a *Actor, req *policy.Request) (engine.Result, engine.Record, error)
	// WaitApproval returns once approval id is decided or expired, or
	// ctx ends.
	WaitApproval(ctx context.Context, id string) (engine.Approval, error)
	Decide(ctx context.Context, a *Actor, id string, approve bool, reason string) (engine.Approval, error)
	Approvals(a *Actor) ([]engine.Approval, error)
}

// Connection limits. A first message must arrive within firstDeadline; a
// human answering a prompt has promptDeadline.
const (
	firstDeadline  = 5 * time.Second
	promptDeadline = 2 * time.Minute
	maxConns       = 256
	maxConnsPerUID = 16
)

// Options wires a Server.
type Options struct {
	Root    string // agent root; the socket is Root/run/warden.sock
	Engine  Engine
	Audit   *audit.Writer
	Logger  *slog.Logger
	Machine string
}

// Server accepts user-socket connections. Close stops it: no new
// connections, every running command is hung up, and Close returns when
// every connection's goroutine has ended.
type Server struct {
	opts   Options
	log    *slog.Logger
	ln     *net.UnixListener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	perUID map[uint32]int
	total  int
}

// Listen creates the socket (mode 0666 in a 0755 folder: anyone may
// connect, the kernel says who did). A stale socket from an agent that
// died is replaced; anything else at that path is an error.
func Listen(opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Machine == "" {
		opts.Machine, _ = os.Hostname()
	}
	p := filepath.Join(opts.Root, wire.SocketPath)
	if st, err := os.Lstat(p); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", p)
		}
		if err := os.Remove(p); err != nil {
			return nil, err
		}
	}
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: p, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", p, err)
	}
	ln.SetUnlinkOnClose(true)
	if err := os.Chmod(p, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{opts: opts, log: opts.Logger.With("component", "elevate"), ln: ln,
		ctx: ctx, cancel: cancel, perUID: map[uint32]int{}}
	return s, nil
}

// Path is where the socket listens.
func (s *Server) Path() string { return s.ln.Addr().String() }

// Serve accepts connections until Close.
func (s *Server) Serve() error {
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if s.ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Error("accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

// Close stops accepting, ends every connection (SIGHUP to running
// commands) and waits for them.
func (s *Server) Close() {
	s.cancel()
	s.ln.Close()
	s.wg.Wait()
}

func (s *Server) admit(uid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= maxConns || s.perUID[uid] >= maxConnsPerUID {
		return false
	}
	s.total++
	s.perUID[uid]++
	return true
}

func (s *Server) release(uid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.perUID[uid]--; s.perUID[uid] == 0 {
		delete(s.perUID, uid)
	}
}

// handle serves one connection: identify, read one request, act.
func (s *Server) handle(c *net.UnixConn) {
	defer c.Close()
	stop := context.AfterFunc(s.ctx, func() { c.Close() })
	defer stop()
	a, err := ActorFromConn(c)
	if err != nil {
		s.log.Warn("user socket: caller not identified", "err", err)
		return
	}
	defer a.Close()
	if !s.admit(a.UID) {
		s.refuse(a, "too many connections", nil)
		return
	}
	defer s.release(a.UID)
	sess := &session{s: s, a: a, c: wire.Conn{C: c}, log: s.log.With("user", a.Name, "uid", a.UID, "pid", a.PID)}
	c.SetReadDeadline(time.Now().Add(firstDeadline))
	m, fds, err := sess.c.Recv()
	if err != nil {
		sess.dropped(err)
		return
	}
	c.SetReadDeadline(time.Time{})
	defer wire.CloseAll(fds)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	sess.ctx = ctx
	switch m.Type {
	case wire.TypeElevate:
		sess.elevate(m, fds)
	case wire.TypeAccess:
		sess.access(m)
	case wire.TypeApprovalsList:
		sess.approvalsList()
	case wire.TypeApprovalsDecide:
		sess.approvalsDecide(m)
	default:
		sess.fail(2, "a conversation starts with elevate, access, approvals-list or approvals-decide, not "+m.Type)
	}
}

// refuse audits a refused caller.
func (s *Server) refuse(a *Actor, why string, details map[string]any) {
	if details == nil {
		details = map[string]any{}
	}
	details["reason"] = why
	details["transport"] = "user-socket"
	s.opts.Audit.Emit(audit.Event{Type: audit.AuthorizationFailed, Severity: audit.Warning, Component: "elevate",
		UserInfo: a.userInfo(), Details: details})
}

func (a *Actor) userInfo() *audit.UserInfo {
	return &audit.UserInfo{User: a.Name, Groups: a.Groups, Identity: fmt.Sprintf("uid:%d", a.UID),
		PeerPID: a.PID, PeerExe: a.Exe}
}

// session is one connection's conversation.
type session struct {
	s   *Server
	a   *Actor
	c   wire.Conn
	ctx context.Context
	log *slog.Logger

	inbox chan *wire.Message // filled by the reader once a command runs or waits
	gone  chan struct{}      // closed when the client hung up
}

// dropped audits a client dropped for a bad, oversized or late message.
func (ss *session) dropped(err error) {
	var ne net.Error
	why := err.Error()
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		why = "no request within the deadline (slow client)"
	case errors.Is(err, os.ErrDeadlineExceeded):
		why = "slow client"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET) {
		return // hung up before asking: nothing to record
	}
	ss.s.refuse(ss.a, "protocol: "+why, nil)
	ss.c.Send(&wire.Message{Type: wire.TypeError, Code: 2, Text: why})
}

func (ss *session) fail(code int, text string) {
	ss.c.Send(&wire.Message{Type: wire.TypeError, Code: code, Text: text})
}

// startReader reads the client's messages from now on into ss.inbox, and
// closes ss.gone when the client hangs up or breaks the protocol.
func (ss *session) startReader() {
	ss.inbox = make(chan *wire.Message, 8)
	ss.gone = make(chan struct{})
	ss.s.wg.Add(1)
	go func() {
		defer ss.s.wg.Done()
		defer close(ss.gone)
		for {
			m, fds, err := ss.c.Recv()
			wire.CloseAll(fds)
			if err != nil {
				if !errors.Is(err, io.EOF) && ss.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
					ss.s.refuse(ss.a, "protocol: "+err.Error(), nil)
				}
				return
			}
			select {
			case ss.inbox <- m:
			case <-ss.ctx.Done():
				return
			}
		}
	}()
}

// ask sends a prompt and returns the answer (bounded by promptDeadline).
func (ss *session) ask(kind, text string) (string, bool) {
	if err := ss.c.Send(&wire.Message{Type: wire.TypePrompt, Prompt: kind, Text: text}); err != nil {
		return "", false
	}
	t := time.NewTimer(promptDeadline)
	defer t.Stop()
	for {
		select {
		case m := <-ss.inbox:
			if m.Type == wire.TypeAnswer {
				return m.Text, true
			}
		case <-ss.gone:
			return "", false
		case <-t.C:
			ss.s.refuse(ss.a, "protocol: no answer to the "+kind+" prompt within the deadline (slow client)", nil)
			ss.fail(1, "no answer within "+promptDeadline.String())
			return "", false
		case <-ss.ctx.Done():
			return "", false
		}
	}
}
