// Package backend is warden's reference backend: it registers agents
// against enrolment tokens, serves each agent group's latest bundle with
// ETags, and stores uploaded audit events as NDJSON, all in one folder. It
// exists so the whole loop runs on one machine and in tests; a fleet can
// serve bundles from any static file server instead (docs/bundles.md).
//
// The folder:
//
//	DIR/tokens.json           [{"token": "...", "group": "lab"}]  enrolment tokens (reusable), kept 0600
//	DIR/bundles/GROUP.tar.gz  the latest bundle of each group; replace it by rename
//	DIR/agents.json           registered agents (written by the backend; credentials only as SHA-256)
//	DIR/audit/AGENT.ndjson    uploaded audit events, one per line, each sequence number once
package backend

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"warden/atomicfile"
	"warden/source"
)

// Token is one enrolment token and the group its agents join.
type Token struct {
	Token string `json:"token"`
	Group string `json:"group,omitempty"`
}

// Agent is a registered agent as agents.json keeps it.
type Agent struct {
	Group            string    `json:"group"`
	Machine          string    `json:"machine"`
	CredentialSHA256 string    `json:"credentialSha256"`
	RegisteredAt     time.Time `json:"registeredAt"`
}

var groupRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Server is the reference backend over one folder. It is safe for
// concurrent use.
type Server struct {
	dir string
	log *slog.Logger

	mu     sync.Mutex
	agents map[string]*Agent
	acked  map[string]uint64 // highest audit seq held, per agent
	etags  map[string]etagEntry

	changedCh chan struct{} // closed and replaced at each change of DIR/bundles
	stopWatch chan struct{}
	watchDone chan struct{}
	closeOnce sync.Once
}

type etagEntry struct {
	size  int64
	mtime time.Time
	etag  string
}

// New opens (creating) the backend folder and loads its agents and the
// audit sequence numbers already stored.
func New(dir string, logger *slog.Logger) (*Server, error) {
	if logger == nil {
		logger = slog.Default()
	}
	for _, d := range []string{dir, filepath.Join(dir, "bundles"), filepath.Join(dir, "audit")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	s := &Server{dir: dir, log: logger, agents: map[string]*Agent{}, acked: map[string]uint64{}, etags: map[string]etagEntry{}}
	data, err := os.ReadFile(filepath.Join(dir, "agents.json"))
	if err == nil {
		if err := json.Unmarshal(data, &s.agents); err != nil {
			return nil, fmt.Errorf("agents.json: %w", err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for id := range s.agents {
		if s.acked[id], err = lastSeq(s.auditPath(id)); err != nil {
			return nil, err
		}
	}
	s.watchBundles()
	return s, nil
}

// Handler serves the protocol of source/protocol.go below prefix ("" or
// e.g. "/v1").
func (s *Server) Handler(prefix string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /register", s.register)
	mux.HandleFunc("GET /agents/{id}/bundle", s.bundle)
	mux.HandleFunc("POST /agents/{id}/audit", s.audit)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	if prefix = strings.TrimRight(prefix, "/"); prefix != "" {
		return http.StripPrefix(prefix, mux)
	}
	return mux
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	var req source.RegisterRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "bad_request", "body is not a registration request")
		return
	}
	tok, err := s.token(req.Token)
	if err != nil {
		s.log.Warn("registration refused", "remote", r.RemoteAddr, "err", err)
		httpError(w, http.StatusUnauthorized, "bad_token", "unknown enrolment token")
		return
	}
	id, cred := randomHex(8), randomSecret()
	sum := sha256.Sum256([]byte(cred))
	a := &Agent{Group: tok.Group, Machine: req.Machine, CredentialSHA256: hex.EncodeToString(sum[:]), RegisteredAt: time.Now().UTC()}
	s.mu.Lock()
	s.agents[id] = a
	err = s.saveAgents()
	s.mu.Unlock()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "store", err.Error())
		return
	}
	s.log.Info("agent registered", "agentId", id, "group", a.Group, "machine", a.Machine)
	writeJSON(w, http.StatusCreated, source.RegisterResponse{AgentID: id, Credential: cred, Group: a.Group})
}

// token finds an enrolment token in tokens.json (read on every
// registration, so tokens are added and revoked by editing the file).
func (s *Server) token(t string) (Token, error) {
	data, err := os.ReadFile(filepath.Join(s.dir, "tokens.json"))
	if err != nil {
		return Token{}, err
	}
	var toks []Token
	if err := json.Unmarshal(data, &toks); err != nil {
		return Token{}, fmt.Errorf("tokens.json: %w", err)
	}
	for _, tk := range toks {
		if t != "" && subtle.ConstantTimeCompare([]byte(tk.Token), []byte(t)) == 1 {
			if tk.Group == "" {
				tk.Group = source.DefaultGroup
			}
			if !groupRe.MatchString(tk.Group) {
				return Token{}, fmt.Errorf("tokens.json: group %q is not a valid id", tk.Group)
			}
			return tk, nil
		}
	}
	return Token{}, errors.New("no such token")
}

// authorize returns the agent the request's bearer credential belongs to.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) (string, *Agent, bool) {
	id := r.PathValue("id")
	cred, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	a := s.agents[id]
	s.mu.Unlock()
	if ok && a != nil {
		sum := sha256.Sum256([]byte(cred))
		if subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum[:])), []byte(a.CredentialSHA256)) == 1 {
			return id, a, true
		}
	}
	httpError(w, http.StatusUnauthorized, "unauthorized", "unknown agent or wrong credential")
	return "", nil, false
}

func (s *Server) bundle(w http.ResponseWriter, r *http.Request) {
	_, a, ok := s.authorize(w, r)
	if !ok {
		return
	}
	path := filepath.Join(s.bundlesDir(), a.Group+".tar.gz")
	if wait := preferWait(r.Header.Get("Prefer")); wait > 0 {
		w.Header().Set("Preference-Applied", "wait="+strconv.Itoa(int(wait/time.Second)))
		if !s.hold(r, path, wait) {
			return
		}
	}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		httpError(w, http.StatusNotFound, "no_bundle", "no bundle for group "+a.Group)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "store", err.Error())
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "store", err.Error())
		return
	}
	etag, err := s.etag(path, f, st)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "store", err.Error())
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Content-Type", "application/gzip")
	w.Header().Set("Cache-Control", "no-cache")
	// ServeContent answers If-None-Match with 304 from the ETag set above.
	http.ServeContent(w, r, "", st.ModTime(), f)
}

// etag is the quoted SHA-256 of the bundle, cached by size and mtime.
func (s *Server) etag(path string, f *os.File, st os.FileInfo) (string, error) {
	s.mu.Lock()
	e, ok := s.etags[path]
	s.mu.Unlock()
	if ok && e.size == st.Size() && e.mtime.Equal(st.ModTime()) {
		return e.etag, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	e = etagEntry{size: st.Size(), mtime: st.ModTime(), etag: `"` + hex.EncodeToString(h.Sum(nil)) + `"`}
	s.mu.Lock()
	s.etags[path] = e
	s.mu.Unlock()
	return e.etag, nil
}

// maxAuditBody bounds one upload (source sends 500 events at a time).
const maxAuditBody = 32 << 20

func (s *Server) audit(w http.ResponseWriter, r *http.Request) {
	id, _, ok := s.authorize(w, r)
	if !ok {
		return
	}
	var batch source.AuditBatch
	if err := json.NewDecoder(io.LimitReader(r.Body, maxAuditBody)).Decode(&batch); err != nil {
		httpError(w, http.StatusBadRequest, "bad_request", "body is not an audit batch")
		return
	}
	// One agent's uploads are serialized so "seq above acked" is exact.
	s.mu.Lock()
	defer s.mu.Unlock()
	acked := s.acked[id]
	var buf []byte
	next := acked
	for _, raw := range batch.Events {
		var e struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(raw, &e); err != nil || e.Seq == 0 {
			httpError(w, http.StatusBadRequest, "bad_event", "an event has no seq")
			return
		}
		if e.Seq <= next {
			continue // held already: a batch resent after a lost acknowledgement
		}
		next = e.Seq
		var line bytes.Buffer
		if err := json.Compact(&line, raw); err != nil {
			httpError(w, http.StatusBadRequest, "bad_event", err.Error())
			return
		}
		buf = append(buf, line.Bytes()...)
		buf = append(buf, '\n')
	}
	if len(buf) > 0 {
		if err := appendSync(s.auditPath(id), buf); err != nil {
			httpError(w, http.StatusInternalServerError, "store", err.Error())
			return
		}
		s.acked[id] = next
	}
	writeJSON(w, http.StatusOK, source.AuditAck{Acked: s.acked[id]})
}

func (s *Server) bundlesDir() string { return filepath.Join(s.dir, "bundles") }

func (s *Server) auditPath(id string) string { return filepath.Join(s.dir, "audit", id+".ndjson") }

// saveAgents writes agents.json atomically. Callers hold s.mu.
func (s *Server) saveAgents() error {
	data, err := json.MarshalIndent(s.agents, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(s.dir, "agents.json"), data, 0o600)
}

// appendSync appends data to name and fsyncs before the upload is
// acknowledged: an acknowledged event is durable.
func appendSync(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// lastSeq is the seq of the last complete line of an NDJSON audit file.
func lastSeq(name string) (uint64, error) {
	data, err := os.ReadFile(name)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var last uint64
	for _, line := range strings.Split(string(data), "\n") {
		var e struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal([]byte(line), &e) == nil && e.Seq > last {
			last = e.Seq
		}
	}
	return last, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, short, msg string) {
	writeJSON(w, code, map[string]string{"error": msg, "code": short})
}
