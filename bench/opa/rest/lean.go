package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
)

// The lean client: HTTP/1.1 keep-alive over a tls.Conn that writes
// request bytes built once before the runs and reads only what it needs
// of the answer (status line, Content-Length, body). It costs a fraction
// of net/http's client per request, on the cores the servers share, and
// it is the same for both servers. Every answer is still checked: status
// 200 and the decision and policy it names.

// leanConn is one keep-alive connection.
type leanConn struct {
	c  *tls.Conn
	br *bufio.Reader
}

// dialLean opens a connection to rawURL's host with cfg (HTTP/1.1 only).
func dialLean(rawURL string, cfg *tls.Config) (*leanConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.Dial("tcp", u.Host, cfg)
	if err != nil {
		return nil, err
	}
	return &leanConn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

// leanRequest is a whole POST, headers and body, for one decision request.
func leanRequest(rawURL string, body []byte) []byte {
	u, err := url.Parse(rawURL)
	check(err)
	out := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
		u.RequestURI(), u.Host, len(body))
	return append(out, body...)
}

var errChunked = errors.New("answer without Content-Length (chunked): the lean client reads only sized bodies")

// do sends req and returns the status and the answer's body, which is
// valid until the next call (it is read into buf).
func (l *leanConn) do(req, buf []byte) (int, []byte, error) {
	if _, err := l.c.Write(req); err != nil {
		return 0, nil, err
	}
	line, err := l.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		h, err := l.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(h) <= 2 { // the blank line
			break
		}
		if n, ok := headerValue(h, "content-length"); ok {
			if length, err = strconv.Atoi(string(n)); err != nil {
				return 0, nil, fmt.Errorf("bad Content-Length %q", h)
			}
		}
	}
	if length < 0 {
		return 0, nil, errChunked
	}
	if cap(buf) < length {
		buf = make([]byte, length)
	}
	buf = buf[:length]
	if _, err := readFull(l.br, buf); err != nil {
		return 0, nil, err
	}
	return status, buf, nil
}

func readFull(br *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := br.Read(buf[n:])
		n += m
		if err != nil && n < len(buf) {
			return n, err
		}
	}
	return n, nil
}

// headerValue returns the value of header line h when its name is name
// (lower case), trimmed.
func headerValue(h []byte, name string) ([]byte, bool) {
	i := bytes.IndexByte(h, ':')
	if i != len(name) {
		return nil, false
	}
	for j := 0; j < i; j++ {
		c := h[j]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[j] {
			return nil, false
		}
	}
	return bytes.TrimSpace(h[i+1:]), true
}

// stringField is the string value of the first key (`"name":`) in a JSON
// body, without decoding it. A key cannot be mistaken for text inside a
// string value: there its quotes are escaped. ok is false when the key is
// missing or its value is not a plain (unescaped) string.
func stringField(body, key []byte) ([]byte, bool) {
	i := bytes.Index(body, key)
	if i < 0 {
		return nil, false
	}
	rest := bytes.TrimLeft(body[i+len(key):], " \t\r\n")
	if len(rest) == 0 || rest[0] != '"' {
		return nil, false
	}
	end := bytes.IndexByte(rest[1:], '"')
	if end < 0 || bytes.IndexByte(rest[1:1+end], '\\') >= 0 {
		return nil, false
	}
	return rest[1 : 1+end], true
}

var keyDecision, keyPolicy = []byte(`"decision":`), []byte(`"policy":`)

// answerIs reports whether an answer body names the decision and policy
// of want ("decision policy", as server.answer gives it), found without
// decoding the JSON; it decodes with answer when a value is not a plain
// string (escaped, or null).
func answerIs(body []byte, want string, answer func([]byte) string) bool {
	d, ok1 := stringField(body, keyDecision)
	p, ok2 := stringField(body, keyPolicy)
	if !ok1 || (!ok2 && bytes.Contains(body, keyPolicy)) {
		return answer(body) == want
	}
	return len(want) == len(d)+1+len(p) && want[:len(d)] == string(d) && want[len(d)] == ' ' && want[len(d)+1:] == string(p)
}
