// Package client is the unprivileged side of warden's user socket: the
// client of `warden elevate`, `warden access` and `warden approvals`. It
// links only the protocol (elevate/wire) and the standard library, so the
// small front binary (cmd/front) that runs `warden elevate` starts in about
// the time a Go hello-world does.
package client

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"warden/elevate/wire"
)

// Client is the unprivileged side of the user socket.
type Client struct {
	c      wire.Conn
	Stderr io.Writer
}

// ErrNoAgent is returned by Dial when no agent listens under the root.
var ErrNoAgent = errors.New("no agent reachable")

// Dial connects to ROOT/run/warden.sock.
func Dial(root string) (*Client, error) {
	p := filepath.Join(root, wire.SocketPath)
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: p, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoAgent, p, unwrapOp(err))
	}
	return &Client{c: wire.Conn{C: c}, Stderr: os.Stderr}, nil
}

func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}

// Close hangs up.
func (cl *Client) Close() error { return cl.c.C.Close() }

// ElevateOptions is `warden elevate`'s command line.
type ElevateOptions struct {
	Argv   []string
	Reason string
	NoWait bool
}

// forwarded are the signals the client catches and passes on.
var forwarded = []os.Signal{unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGHUP, unix.SIGTSTP, unix.SIGCONT, unix.SIGWINCH}

// Elevate asks the agent to run o.Argv as root with this process's stdin,
// stdout and stderr, and returns the exit code `warden elevate` exits
// with. While the command runs, the terminal's signals are forwarded to
// it; when this process dies, the agent hangs the command up.
func (cl *Client) Elevate(o ElevateOptions) int {
	tty := openTTY()
	if tty != nil {
		defer tty.Close()
	}
	m := &wire.Message{Type: wire.TypeElevate, Argv: o.Argv, Reason: o.Reason, NoWait: o.NoWait, TTY: tty != nil,
		Env: callerEnv()}
	if err := cl.c.Send(m, 0, 1, 2); err != nil {
		fmt.Fprintln(cl.Stderr, "warden: send request:", err)
		return wire.ExitNoAgent
	}
	// The conversation is read on this goroutine; signals are handled on
	// another, which forwards them once the command runs. Before that,
	// INT, TERM or HUP means the user leaves (a pending approval stays
	// pending): the connection is closed and the read below ends.
	var started atomic.Bool
	var left atomic.Int32
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			var s os.Signal
			select {
			case <-stop:
				return
			case s = <-sigs:
			}
			sig := s.(unix.Signal)
			if !started.Load() {
				if sig == unix.SIGINT || sig == unix.SIGTERM || sig == unix.SIGHUP {
					left.Store(int32(sig))
					cl.c.C.Close()
					return
				}
				continue
			}
			cl.c.Send(&wire.Message{Type: wire.TypeSignal, Signal: int(sig)})
			if sig == unix.SIGTSTP {
				// Stop with the command, as a shell expects of a
				// foreground job; SIGCONT (fg) is forwarded on.
				unix.Kill(0, unix.SIGSTOP)
			}
		}
	}()
	for {
		m, fds, err := cl.c.Recv()
		wire.CloseAll(fds)
		if err != nil {
			if sig := left.Load(); sig != 0 {
				fmt.Fprintln(cl.Stderr, "\nwarden: interrupted; a pending approval stays pending, run the same command again to pick it up")
				return 128 + int(sig)
			}
			fmt.Fprintln(cl.Stderr, "warden: the agent hung up:", err)
			return wire.ExitRefused
		}
		switch m.Type {
		case wire.TypeStarted:
			started.Store(true)
		case wire.TypeExit:
			return m.Code
		case wire.TypeError:
			if m.Text != "" {
				fmt.Fprintln(cl.Stderr, "warden:", m.Text)
			}
			return m.Code
		case wire.TypeNotice:
			fmt.Fprintln(cl.Stderr, "warden:", m.Text)
		case wire.TypeApproval:
			fmt.Fprintln(cl.Stderr, "warden:", m.Text)
			if !o.NoWait {
				fmt.Fprintln(cl.Stderr, "warden: waiting for approval (Ctrl-C leaves the request pending)...")
			}
		case wire.TypePrompt:
			cl.c.Send(&wire.Message{Type: wire.TypeAnswer, Text: prompt(tty, m)})
		}
	}
}

// Call sends one request and returns its result (access, approvals),
// answering prompts on the terminal.
func (cl *Client) Call(m *wire.Message) (json.RawMessage, int, error) {
	tty := openTTY()
	if tty != nil {
		defer tty.Close()
	}
	m.TTY = tty != nil
	if err := cl.c.Send(m); err != nil {
		return nil, wire.ExitNoAgent, err
	}
	for {
		r, fds, err := cl.c.Recv()
		wire.CloseAll(fds)
		if err != nil {
			return nil, wire.ExitRefused, fmt.Errorf("the agent hung up: %w", err)
		}
		switch r.Type {
		case wire.TypeResult:
			return r.Data, 0, nil
		case wire.TypeError:
			return nil, r.Code, errors.New(r.Text)
		case wire.TypeNotice, wire.TypeApproval:
			fmt.Fprintln(cl.Stderr, "warden:", r.Text)
			if r.Type == wire.TypeApproval && !m.NoWait {
				fmt.Fprintln(cl.Stderr, "warden: waiting for approval (Ctrl-C leaves the request pending)...")
			}
		case wire.TypePrompt:
			cl.c.Send(&wire.Message{Type: wire.TypeAnswer, Text: prompt(tty, r)})
		}
	}
}

// openTTY opens the controlling terminal for prompts; nil without one.
func openTTY() *os.File {
	if _, err := unix.IoctlGetTermios(0, unix.TCGETS); err != nil {
		return nil // stdin is not a terminal: no prompting (scripts use --reason)
	}
	f, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil
	}
	return f
}

// prompt asks on the terminal; MFA codes are read without echo.
func prompt(tty *os.File, m *wire.Message) string {
	if tty == nil {
		return ""
	}
	fmt.Fprint(tty, m.Text)
	if m.Prompt == wire.PromptMFA {
		if t, err := unix.IoctlGetTermios(int(tty.Fd()), unix.TCGETS); err == nil {
			quiet := *t
			quiet.Lflag &^= unix.ECHO
			unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, &quiet)
			defer func() {
				unix.IoctlSetTermios(int(tty.Fd()), unix.TCSETS, t)
				fmt.Fprintln(tty)
			}()
		}
	}
	line, _ := bufio.NewReader(tty).ReadString('\n')
	return strings.TrimRight(line, "\r\n")
}

// callerEnv is what the client offers of its environment: only what the
// agent would keep anyway (the agent filters again).
func callerEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if k, _, ok := strings.Cut(kv, "="); ok && wire.KeepEnv(k) {
			out = append(out, kv)
		}
	}
	return out
}
