// Command e2e measures warden end to end: the real `warden` binary,
// driven as an operator drives it (bundles dropped into the inbox, files
// tampered with, a plugin killed, the HTTPS API called with the admin
// certificate), with medians and p99 over repeated runs and the machine's
// load average printed beside them. It is what docs/benchmarks.md quotes
// first; the Go benchmarks of each package measure the inner parts.
//
//	go build -o bin/warden ./cmd/warden
//	go run ./bench/e2e --warden bin/warden [--only apply,tamper,plugin,evaluate,audit] [--runs 5] [--docs 10000]
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

var (
	wardenBin = flag.String("warden", "bin/warden", "the warden binary")
	runs      = flag.Int("runs", 5, "repetitions of each measurement")
	ndocs     = flag.Int("docs", 10000, "policies in the bundle of the apply scenario")
	changed   = flag.Int("changed", 10, "policies changed in the second bundle")
	only      = flag.String("only", "apply,tamper,plugin,evaluate,audit", "scenarios to run")
	keep      = flag.Bool("keep", false, "keep the agent roots (for a post-mortem)")
)

func main() {
	flag.Parse()
	bin, err := filepath.Abs(*wardenBin)
	check(err)
	*wardenBin = bin
	fmt.Printf("# warden e2e: %s, %d CPUs, load %s\n", bin, numCPU(), loadavg())
	for _, s := range strings.Split(*only, ",") {
		switch strings.TrimSpace(s) {
		case "apply":
			benchApply()
		case "tamper":
			benchTamper()
		case "plugin":
			benchPlugin()
		case "evaluate":
			benchEvaluate()
		case "audit":
			benchAudit()
		default:
			fail("unknown scenario %q", s)
		}
	}
}

// agentProc is one running `warden agent` on its own root.
type agentProc struct {
	root string
	keys string // bundle.key and bundle.pub trusted by this agent
	cmd  *exec.Cmd
	api  string
	http *http.Client
}

// startAgent makes a fresh root that trusts a new bundle key and starts an
// agent on it with every listener on a free port. prepare, when not nil,
// runs on the root before the agent starts.
func startAgent(prepare func(root string)) *agentProc {
	root, err := os.MkdirTemp("", "warden-e2e-")
	check(err)
	check(os.Chmod(root, 0o755))
	a := &agentProc{root: root, keys: filepath.Join(root, "..", filepath.Base(root)+"-keys")}
	run(*wardenBin, "bundle", "keygen", "--out", a.keys)
	check(os.MkdirAll(filepath.Join(root, "trust"), 0o700))
	pub, err := os.ReadFile(filepath.Join(a.keys, "bundle.pub"))
	check(err)
	check(os.WriteFile(filepath.Join(root, "trust", "e2e.pub"), pub, 0o600))
	if prepare != nil {
		prepare(root)
	}
	a.cmd = exec.Command(*wardenBin, "--root", root, "agent", "--listen-api", "127.0.0.1:0",
		"--listen-health", "127.0.0.1:0", "--listen-mqtt", "127.0.0.1:0")
	logf, err := os.Create(filepath.Join(os.TempDir(), filepath.Base(root)+".log"))
	check(err)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	check(a.cmd.Start())
	var info struct{ API, CA string }
	waitFor(30*time.Second, "agent serving", func() bool {
		data, err := os.ReadFile(filepath.Join(root, "run", "agent.json"))
		return err == nil && json.Unmarshal(data, &info) == nil && info.API != ""
	})
	a.api = info.API
	a.http = adminClient(root, info.CA)
	return a
}

func adminClient(root, caFile string) *http.Client {
	caPEM, err := os.ReadFile(caFile)
	check(err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(filepath.Join(root, "certs", "admin.pem"), filepath.Join(root, "certs", "admin-key.pem"))
	check(err)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert},
			MinVersion: tls.VersionTLS12, ServerName: "localhost"}}}
}

func (a *agentProc) stop() {
	a.cmd.Process.Signal(syscall.SIGTERM)
	a.cmd.Wait()
	if !*keep {
		os.RemoveAll(a.root)
		os.RemoveAll(a.keys)
	}
}

// call makes an admin API request and decodes the JSON answer into out.
func (a *agentProc) call(method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, "https://"+a.api+path, rd)
	req.Host = "localhost"
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == 200 {
		return resp.StatusCode, json.Unmarshal(data, out)
	}
	return resp.StatusCode, nil
}

// build signs the documents folder in into a bundle of the given version.
func (a *agentProc) build(in string, version int) string {
	out := filepath.Join(os.TempDir(), fmt.Sprintf("%s-v%d.tar.gz", filepath.Base(a.root), version))
	run(*wardenBin, "bundle", "build", "--in", in, "--key", filepath.Join(a.keys, "bundle.key"),
		"--version", fmt.Sprint(version), "--out", out)
	return out
}

// drop moves a built bundle into the inbox the way the docs say to: as
// NAME.part, then a rename. It returns the moment of the rename.
func (a *agentProc) drop(bundle string) time.Time {
	inbox := filepath.Join(a.root, "inbox")
	check(os.MkdirAll(inbox, 0o700))
	data, err := os.ReadFile(bundle)
	check(err)
	part := filepath.Join(inbox, filepath.Base(bundle)+".part")
	check(os.WriteFile(part, data, 0o600))
	os.Remove(bundle)
	t := time.Now()
	check(os.Rename(part, strings.TrimSuffix(part, ".part")))
	return t
}

// stats are the median and p99 of some durations.
type stats struct {
	n                  int
	med, p99, min, max time.Duration
}

func summarize(ds []time.Duration) stats {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return stats{}
	}
	p99 := s[min(len(s)-1, (len(s)*99+99)/100-1)]
	return stats{n: len(s), med: s[len(s)/2], p99: p99, min: s[0], max: s[len(s)-1]}
}

func (s stats) String() string {
	r := func(d time.Duration) string {
		switch {
		case d >= time.Second:
			return d.Round(time.Millisecond).String()
		case d >= time.Millisecond:
			return d.Round(10 * time.Microsecond).String()
		default:
			return d.Round(time.Microsecond).String()
		}
	}
	return fmt.Sprintf("median %s  p99 %s  min %s  max %s  (n=%d, load %s)", r(s.med), r(s.p99), r(s.min), r(s.max), s.n, loadavg())
}

func waitFor(limit time.Duration, what string, cond func() bool) {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			fail("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func numCPU() int {
	data, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(data), "processor\t:")
}

func run(args ...string) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		fail("%v: %v\n%s", args, err, out)
	}
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "e2e: "+format+"\n", args...)
	os.Exit(1)
}
