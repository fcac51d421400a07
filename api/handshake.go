package api

import (
	"log"
	"log/slog"
	"strings"
)

// handshakePrefix starts net/http's line for a failed TLS handshake
// (plain HTTP, an old TLS version, no common cipher suite, a bad
// ClientHello): the only place http.Server reports one.
const handshakePrefix = "http: TLS handshake error from "

// ErrorLog returns the log for the HTTPS API's http.Server (its ErrorLog):
// a failed TLS handshake is audited as PROCESS_AUTHENTICATION_FAILED
// through the same capped, coalesced path as every refused caller (the
// broker audits its own handshakes the same way); other lines go to
// logger at Debug. local is the listener's address, for the peer lookup.
func (s *Server) ErrorLog(logger *slog.Logger, local string) *log.Logger {
	fallback := slog.NewLogLogger(logger.Handler(), slog.LevelDebug)
	return log.New(writerFunc(func(p []byte) (int, error) {
		line := strings.TrimSpace(string(p))
		if rest, ok := strings.CutPrefix(line, handshakePrefix); ok {
			remote, reason, _ := strings.Cut(rest, ": ")
			// A connection closed before sending anything (a port probe,
			// a health check on the wrong port) attempted nothing.
			if reason != "EOF" && !strings.HasSuffix(reason, "connection reset by peer") {
				s.RefuseHandshake(local, remote, reason)
			}
		}
		fallback.Print(line)
		return len(p), nil
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
