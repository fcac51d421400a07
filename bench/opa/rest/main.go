// Command rest compares warden's decision API with OPA's REST server on
// the same rules, on the same machine, driven by the same client: the
// real `warden agent` holding 10,000 policies (POST /api/v1/evaluate over
// mTLS, every decision audited, as always) and `opa run --server` holding
// the same policies translated to Rego (POST /v1/data/warden/decision over
// TLS, decision logging off). Runs alternate between the two; the client
// keeps --conns connections busy for --for each run and reports
// throughput and latency percentiles, and the ratio.
//
//	go build -o bin/warden ./cmd/warden
//	GOBIN=/tmp/opa go install github.com/open-policy-agent/opa@v1.22.2
//	cd bench/opa && go run ./rest --warden ../../bin/warden --opa /tmp/opa/opa
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
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"warden/bench/agentproc"
	"warden/bench/opa"
	"warden/policy/policytest"
	"warden/schema"
)

var (
	wardenBin = flag.String("warden", "../../bin/warden", "the warden binary")
	opaBin    = flag.String("opa", "opa", "the opa binary (go install github.com/open-policy-agent/opa@v1.22.2)")
	rules     = flag.Int("rules", 9999, "policies (with Settings, the bundle limit of 10,000 documents)")
	conns     = flag.Int("conns", 32, "concurrent client connections")
	runFor    = flag.Duration("for", 5*time.Second, "length of each run")
	runs      = flag.Int("runs", 5, "runs of each server, alternating")
	mix       = flag.String("mix", "synthetic", "synthetic: policytest's policies and requests (those of the in-process comparison); tools: dev-tools-like policies with requests that match their group")
)

func main() {
	flag.Parse()
	dir, err := os.MkdirTemp("", "warden-rest-")
	check(err)
	defer os.RemoveAll(dir)
	check(os.Chmod(dir, 0o755))
	docs, reqs := workload(*mix, *rules)
	w := startWarden(dir, docs)
	defer w.stop()
	o := startOPA(dir, docs)
	defer o.stop()

	// The two answer the same: a sample of requests decided by both.
	for _, r := range reqs[:64] {
		wd, od := w.decide(r), o.decide(r)
		if wd != od {
			fail("warden and OPA disagree on %s: %q vs %q", r, wd, od)
		}
	}
	var wr, or []result
	for i := 0; i < *runs; i++ {
		wr = append(wr, drive(w, reqs))
		or = append(or, drive(o, reqs))
		fmt.Printf("  run %d: warden %s | OPA %s\n", i+1, wr[i], or[i])
	}
	wm, om := median(wr), median(or)
	fmt.Printf("warden POST /api/v1/evaluate (mTLS, audited): %s\n", wm)
	fmt.Printf("OPA    POST /v1/data/warden/decision (TLS):   %s\n", om)
	fmt.Printf("throughput ratio warden/OPA: %.1fx (%d policies, %s mix, median of %d runs each, %d connections, load %s)\n",
		wm.rate/om.rate, *rules, *mix, *runs, *conns, agentproc.LoadAvg())
}

// server is one decision service the client drives.
type server struct {
	name   string
	url    string
	client *http.Client
	body   func(req []byte) []byte
	answer func(resp []byte) string
	stop   func()
}

func (s *server) decide(req []byte) string {
	resp, err := s.client.Post(s.url, "application/json", bytes.NewReader(s.body(req)))
	check(err)
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		fail("%s: %d %s", s.name, resp.StatusCode, data)
	}
	return s.answer(data)
}

type result struct {
	rate          float64
	p50, p99, max time.Duration
}

func (r result) String() string {
	return fmt.Sprintf("%.0f decisions/s, p50 %s p99 %s", r.rate, r.p50.Round(10*time.Microsecond), r.p99.Round(10*time.Microsecond))
}

func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int { return int(a.rate - b.rate) })
	m := s[len(s)/2]
	p99s := make([]time.Duration, len(rs))
	for i, r := range rs {
		p99s[i] = r.p99
	}
	slices.Sort(p99s)
	m.p99 = p99s[len(p99s)/2] // the median p99 of the runs
	return m
}

// drive keeps --conns requests in flight for --for and measures.
func drive(s *server, reqs [][]byte) result {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	stop := time.Now().Add(*runFor)
	t0 := time.Now()
	for c := 0; c < *conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			var mine []time.Duration
			for i := c; time.Now().Before(stop); i += *conns {
				body := s.body(reqs[i%len(reqs)])
				t := time.Now()
				resp, err := s.client.Post(s.url, "application/json", bytes.NewReader(body))
				check(err)
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					fail("%s: status %d", s.name, resp.StatusCode)
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	el := time.Since(t0)
	slices.Sort(lat)
	return result{rate: float64(len(lat)) / el.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], max: lat[len(lat)-1]}
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

func startWarden(dir string, docs map[string][]byte) *server {
	a, err := agentproc.Start(*wardenBin, "warden-rest-", nil)
	check(err)
	in := filepath.Join(dir, "docs")
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
	cfg, err := a.AdminTLS()
	check(err)
	return &server{name: "warden", url: "https://" + a.API + "/api/v1/evaluate",
		client: client(cfg), stop: func() { a.Stop(false) },
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
	certFile, keyFile, pool := selfSigned(dir)
	port := freePort()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(*opaBin, "run", "--server", "--addr", addr, "--log-level", "error",
		"--tls-cert-file", certFile, "--tls-private-key-file", keyFile, regoFile)
	cmd.Stderr = os.Stderr
	check(cmd.Start())
	s := &server{name: "OPA", url: "https://" + addr + "/v1/data/warden/decision",
		stop:   func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() },
		client: client(&tls.Config{RootCAs: pool, ServerName: "localhost"}),
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
	return s
}

func client(cfg *tls.Config) *http.Client {
	cfg.MinVersion = tls.VersionTLS12
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg,
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
}

// selfSigned writes a certificate for localhost/127.0.0.1 for OPA's TLS.
func selfSigned(dir string) (certFile, keyFile string, pool *x509.CertPool) {
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
	certFile, keyFile = filepath.Join(dir, "opa.pem"), filepath.Join(dir, "opa-key.pem")
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

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "rest: "+format+"\n", args...)
	os.Exit(1)
}
