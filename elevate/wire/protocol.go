// Package wire is the user-socket protocol of warden's agent
// (DIR/run/warden.sock): the messages, their limits and checks, and one end
// of a connection. Both sides use it: the agent's server (package elevate)
// and the unprivileged client (package elevate/client), which links nothing
// else so that `warden elevate` starts fast.
package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The user-socket protocol (documented in docs/elevation.md).
//
// The socket is SOCK_SEQPACKET: every message is one datagram holding one
// JSON object of at most MaxMessage bytes, so there is no framing to get
// wrong and a message is never half read. Every message carries "v"
// (Version) and "type". File descriptors (the caller's stdin, stdout and
// stderr) ride with the message that needs them as SCM_RIGHTS.
//
// Client to agent: elevate, access, approvals-list, approvals-decide
// (first message), answer (to a prompt), signal (forwarded to a running
// command). Agent to client: prompt, notice, approval, started, exit,
// result, error.
// SocketPath is the user socket below the agent root.
const SocketPath = "run/warden.sock"

const (
	Version    = 1
	MaxMessage = 64 << 10
	maxFDs     = 3
	maxArgs    = 4096
	maxEnv     = 64
	maxText    = 2048
)

// Message types.
const (
	TypeElevate         = "elevate"
	TypeAccess          = "access"
	TypeApprovalsList   = "approvals-list"
	TypeApprovalsDecide = "approvals-decide"
	TypeAnswer          = "answer"
	TypeSignal          = "signal"

	TypePrompt   = "prompt"
	TypeNotice   = "notice"
	TypeApproval = "approval"
	TypeStarted  = "started"
	TypeExit     = "exit"
	TypeResult   = "result"
	TypeError    = "error"
)

// Prompt kinds.
const (
	PromptJustification = "justification"
	PromptMFA           = "mfa"
)

// Message is every message of the protocol; Type says which fields mean
// something. Identity is not among them: the agent takes it from the
// kernel.
type Message struct {
	V    int    `json:"v"`
	Type string `json:"type"`

	// elevate
	Argv   []string `json:"argv,omitempty"`
	Env    []string `json:"env,omitempty"` // KEY=VALUE; the agent keeps only its allow-list
	Reason string   `json:"reason,omitempty"`
	NoWait bool     `json:"noWait,omitempty"`
	TTY    bool     `json:"tty,omitempty"` // the client can prompt on a terminal

	// access
	Path    string `json:"path,omitempty"`
	Write   bool   `json:"write,omitempty"`
	Seconds int    `json:"seconds,omitempty"`

	// approvals-decide, approval
	ID      string `json:"id,omitempty"`
	Approve bool   `json:"approve,omitempty"`

	// answer, prompt, notice, error
	Prompt string `json:"prompt,omitempty"`
	Text   string `json:"text,omitempty"`

	// signal, started, exit
	Signal int `json:"signal,omitempty"`
	PID    int `json:"pid,omitempty"`
	Code   int `json:"code,omitempty"`

	// result: the answer of access and approvals (JSON of its own)
	Data json.RawMessage `json:"data,omitempty"`
}

// Errors of Decode.
var (
	ErrTooLarge   = fmt.Errorf("message larger than %d bytes", MaxMessage)
	ErrBadVersion = errors.New("unsupported protocol version")
)

// Decode parses and checks one message: known type, this version, no
// unknown fields, bounded lists and strings.
func Decode(data []byte) (*Message, error) {
	if len(data) > MaxMessage {
		return nil, ErrTooLarge
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var m Message
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("message: data after the JSON object")
	}
	if m.V != Version {
		return nil, fmt.Errorf("%w %d (this agent speaks %d)", ErrBadVersion, m.V, Version)
	}
	return &m, m.check()
}

func (m *Message) check() error {
	switch m.Type {
	case TypeElevate:
		if len(m.Argv) == 0 || m.Argv[0] == "" {
			return errors.New("message: argv: a command is required")
		}
	case TypeAccess:
		if m.Path == "" {
			return errors.New("message: path: required")
		}
	case TypeApprovalsDecide:
		if m.ID == "" {
			return errors.New("message: id: required")
		}
	case TypeAnswer, TypeSignal, TypeApprovalsList,
		TypePrompt, TypeNotice, TypeApproval, TypeStarted, TypeExit, TypeResult, TypeError:
	default:
		return fmt.Errorf("message: type: unknown %q", m.Type)
	}
	if len(m.Argv) > maxArgs {
		return fmt.Errorf("message: argv: more than %d arguments", maxArgs)
	}
	if len(m.Env) > maxEnv {
		return fmt.Errorf("message: env: more than %d entries", maxEnv)
	}
	for i, a := range m.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("message: argv[%d]: contains a NUL byte", i)
		}
	}
	for _, s := range []struct{ name, v string }{{"reason", m.Reason}, {"text", m.Text}, {"id", m.ID}} {
		if len(s.v) > maxText {
			return fmt.Errorf("message: %s: longer than %d bytes", s.name, maxText)
		}
	}
	if len(m.Path) > 4096 || strings.IndexByte(m.Path, 0) >= 0 {
		return errors.New("message: path: longer than 4096 bytes or contains NUL")
	}
	if m.Signal < 0 || m.Signal > 64 || m.Seconds < 0 {
		return errors.New("message: signal or seconds out of range")
	}
	return nil
}

// Conn is one end of a user-socket connection.
type Conn struct {
	C *net.UnixConn
}

// Send writes m with fds attached (none when fds is empty).
func (c Conn) Send(m *Message, fds ...int) error {
	m.V = Version
	data, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(data) > MaxMessage {
		return ErrTooLarge
	}
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	// A peer that stops reading cannot hold the sender forever.
	c.C.SetWriteDeadline(time.Now().Add(sendDeadline))
	_, _, err = c.C.WriteMsgUnix(data, oob, nil)
	return err
}

// sendDeadline bounds one send to a peer that does not read.
const sendDeadline = 10 * time.Second

// Recv reads one message and the fds that came with it. A message that was
// cut short (larger than MaxMessage) is ErrTooLarge; its fds are closed.
func (c Conn) Recv() (*Message, []*os.File, error) {
	buf := make([]byte, MaxMessage+1)
	oob := make([]byte, unix.CmsgSpace(4*maxFDs))
	n, oobn, flags, _, err := c.C.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, err
	}
	fds, fdErr := parseRights(oob[:oobn])
	if n == 0 && oobn == 0 {
		return nil, nil, io.EOF
	}
	if flags&unix.MSG_CTRUNC != 0 && fdErr == nil {
		fdErr = errors.New("too many file descriptors")
	}
	if flags&unix.MSG_TRUNC != 0 || n > MaxMessage {
		CloseAll(fds)
		return nil, nil, ErrTooLarge
	}
	if fdErr != nil {
		CloseAll(fds)
		return nil, nil, fmt.Errorf("message: %w", fdErr)
	}
	m, err := Decode(buf[:n])
	if err != nil {
		CloseAll(fds)
		return nil, nil, err
	}
	return m, fds, nil
}

func parseRights(oob []byte) ([]*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	var bad error
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = err
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd)))
		}
	}
	if len(files) > maxFDs {
		bad = fmt.Errorf("%d file descriptors (at most %d)", len(files), maxFDs)
	}
	return files, bad
}

// CloseAll closes the files that came with a message.
func CloseAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// Exit codes of `warden elevate` besides the command's own; the agent's
// error messages carry them in Code.
const (
	ExitRefused = 1  // denied, or a step the policy asks for was not done
	ExitUsage   = 2  // bad request
	ExitNoAgent = 3  // the socket is not there
	ExitPending = 75 // an approval is pending (--no-wait); EX_TEMPFAIL
)

// KeepEnv reports whether the caller's variable key may reach an elevated
// command (sudo's env_reset default list, minus what names files). The
// client offers only these; the agent filters again.
func KeepEnv(key string) bool {
	switch key {
	case "TERM", "LANG", "LANGUAGE", "COLORTERM":
		return true
	}
	return strings.HasPrefix(key, "LC_")
}
