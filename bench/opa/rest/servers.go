package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"warden/bench/agentproc"
	"warden/bench/opa"
	"warden/policy/policytest"
	"warden/schema"
)

// server is one decision service the client drives.
type server struct {
	name   string
	url    string
	client *http.Client
	body   func(req []byte) []byte
	answer func(resp []byte) string
	pid    func() int // the server process, for its CPU time
	proto  string     // the HTTP version it answered with

	tls   *tls.Config // for the lean client's connections
	conns []*leanConn // the lean client's, for the current run
	wire  [][]byte    // the lean client's request bytes, by request
	want  []string    // the answer to each request, "decision policy"
	floor bool        // decides nothing: its answers are not checked
}

// prepare builds the lean client's request bytes for reqs and records
// want, the answers they must get.
func (s *server) prepare(reqs [][]byte, want []string) {
	s.wire = make([][]byte, len(reqs))
	for i, r := range reqs {
		s.wire[i] = leanRequest(s.url, s.body(r))
	}
	s.want = want
}

// leanConns returns n new connections for a run, closing the last run's
// (which may have sat idle past the server's idle timeout while the
// other servers ran). They are dialed before the clock starts: no
// handshake is measured.
func (s *server) leanConns(n int) []*leanConn {
	for _, c := range s.conns {
		c.c.Close()
	}
	s.conns = s.conns[:0]
	for len(s.conns) < n {
		c, err := dialLean(s.url, s.tls)
		check(err)
		s.conns = append(s.conns, c)
	}
	return s.conns
}

func (s *server) decide(req []byte) string {
	resp, err := s.client.Post(s.url, "application/json", bytes.NewReader(s.body(req)))
	check(err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		fail("%s: %d %s", s.name, resp.StatusCode, data)
	}
	s.proto = resp.Proto
	return s.answer(data)
}

func workload(mix string, n int) (map[string][]byte, [][]byte) {
	switch mix {
	case "tools":
		return policies(n), requests(n, 2048)
	case "synthetic":
		docs := make(map[string][]byte, n)
		for _, d := range policytest.Policies(n) {
			data, err := json.Marshal(map[string]any{"kind": d.Kind, "id": d.ID, "spec": d.Spec})
			check(err)
			docs["policies/"+d.ID+".json"] = data
		}
		var reqs [][]byte
		for _, r := range policytest.Requests(n, 2048, 1) {
			data, err := json.Marshal(r)
			check(err)
			reqs = append(reqs, data)
		}
		return docs, reqs
	}
	fail("unknown --mix %q", mix)
	return nil, nil
}

// policies are n policies like DESIGN.md's dev-tools, each for its own
// tool, as JSON documents by file name.
func policies(n int) map[string][]byte {
	files := make(map[string][]byte, n)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("p-%05d", i)
		files["policies/"+id+".json"] = []byte(`{"kind": "Policy", "id": "` + id + `", "spec": {"name": "Policy ` + id +
			`", "type": "PrivilegeElevation", "status": "enforce", "priority": ` + strconv.Itoa(i%1000) +
			`, "controls": ["allow", "justification"], "durationSeconds": 900, "filters": {"users": ["*"], "groups": ["developers"], ` +
			`"applications": [{"path": "/usr/bin/tool-` + strconv.Itoa(i) + `*"}]}}}`)
	}
	return files
}

// requests: half for a tool some policy covers (justification asked), half
// for a program none does (denied).
func requests(n, m int) [][]byte {
	out := make([][]byte, m)
	for k := range out {
		app := fmt.Sprintf("/usr/bin/vim%d", k)
		if k%2 == 0 {
			app = fmt.Sprintf("/usr/bin/tool-%d-x", (k*7919)%n)
		}
		out[k] = fmt.Appendf(nil, `{"user": "dave", "groups": ["developers"], "machine": "ws-17", "sessionId": "s-%d", "action": "elevate", "application": {"path": %q}}`, k, app)
	}
	return out
}

func startWarden(dir string, docs map[string][]byte, name, bin string) *server {
	a, err := agentproc.Start(bin, "warden-rest-", nil)
	check(err)
	exitMu.Lock()
	onExit = append(onExit, func() { a.Stop(false) })
	exitMu.Unlock()
	in := filepath.Join(dir, name+"-docs")
	for name, data := range docs {
		check(os.MkdirAll(filepath.Dir(filepath.Join(in, name)), 0o755))
		check(os.WriteFile(filepath.Join(in, name), data, 0o644))
	}
	// Not rate limited or broken by the benchmark's own flood.
	check(os.WriteFile(filepath.Join(in, "settings.json"), []byte(`{"kind": "Settings", "id": "agent", "spec": {"allowedHosts": ["localhost", "127.0.0.1"],
  "rateLimit": {"perMinute": 1000000, "queue": 100000}, "circuitBreaker": {"failures": 10000, "openSeconds": 1}}}`), 0o644))
	bundle, err := a.Build(in, 1)
	check(err)
	_, err = a.Drop(bundle)
	check(err)
	waitFor("bundle applied", func() bool {
		_, err := os.Stat(filepath.Join(a.Root, "inbox", "done", filepath.Base(bundle)))
		return err == nil
	})
	// The first apply goes on after the bundle is recorded as applied:
	// the files controller writes (and syncs) the 9,999 policy files.
	// Measuring before it is done would charge that to the decisions.
	waitIdle("warden", a.Pid())
	cfg, err := a.AdminTLS()
	check(err)
	return &server{name: name, url: "https://" + a.API + "/api/v1/evaluate",
		client: client(cfg), tls: cfg, pid: a.Pid,
		body: func(r []byte) []byte { return r },
		answer: func(b []byte) string {
			var a struct{ Decision, Policy string }
			check(json.Unmarshal(b, &a))
			return a.Decision + " " + a.Policy
		}}
}

func startOPA(dir string, docs map[string][]byte) *server {
	files := make([]schema.File, 0, len(docs))
	for n, d := range docs {
		files = append(files, schema.File{Name: n, Data: d})
	}
	parsed, err := schema.ValidateMany(files)
	check(err)
	module, err := opa.Rego(parsed)
	check(err)
	regoFile := filepath.Join(dir, "warden.rego")
	check(os.WriteFile(regoFile, []byte(module), 0o644))
	certFile, keyFile, pool := selfSigned(dir, "opa")
	port := freePort()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(*opaBin, "run", "--server", "--addr", addr, "--log-level", "error", "--skip-version-check",
		"--tls-cert-file", certFile, "--tls-private-key-file", keyFile, regoFile)
	startStopped(cmd)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	s := &server{name: "OPA", url: "https://" + addr + "/v1/data/warden/decision",
		pid:    func() int { return cmd.Process.Pid },
		client: client(cfg), tls: cfg,
		body: func(r []byte) []byte {
			return append(append([]byte(`{"input": `), r...), '}')
		},
		answer: func(b []byte) string {
			var a struct {
				Result struct{ Decision, Policy string }
			}
			check(json.Unmarshal(b, &a))
			return a.Result.Decision + " " + a.Result.Policy
		}}
	waitFor("OPA serving", func() bool {
		resp, err := s.client.Get("https://" + addr + "/health")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	waitIdle("OPA", cmd.Process.Pid)
	return s
}

// waitIdle waits until process pid has used under 2 % of a core for a
// whole second: done with its start-up work.
func waitIdle(what string, pid int) {
	var last time.Duration
	waitFor(what+" idle", func() bool {
		t, _ := procCPU(strconv.Itoa(pid))
		idle := last != 0 && t-last < 20*time.Millisecond
		last = t
		if !idle {
			time.Sleep(time.Second)
		}
		return idle
	})
}

func client(cfg *tls.Config) *http.Client {
	cfg.MinVersion = tls.VersionTLS12
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg,
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, ForceAttemptHTTP2: *h2}}
}

// selfSigned writes a certificate for localhost/127.0.0.1, for a server
// other than warden (which has its own), as dir/name.pem and
// dir/name-key.pem.
func selfSigned(dir, name string) (certFile, keyFile string, pool *x509.CertPool) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	check(err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	check(err)
	kder, err := x509.MarshalECPrivateKey(key)
	check(err)
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	check(os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	check(os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	check(err)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitFor(what string, cond func() bool) {
	deadline := time.Now().Add(5 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			fail("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startStopped starts a server process, its stderr ours, and has it
// stopped with SIGTERM when the benchmark exits.
func startStopped(cmd *exec.Cmd) {
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	exitMu.Lock()
	onExit = append(onExit, func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	exitMu.Unlock()
}
