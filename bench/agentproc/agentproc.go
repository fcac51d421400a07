// Package agentproc runs the real `warden agent` for the end-to-end
// benchmarks (bench/e2e, bench/opa/rest): a fresh root that trusts a new
// bundle key, every listener on a free loopback port, the admin client,
// and bundles signed with the binary and dropped into the inbox the way
// docs/bundles.md tells an operator to.
package agentproc

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Agent is one running agent on its own root.
type Agent struct {
	Bin  string // the warden binary
	Root string
	Keys string // bundle.key and bundle.pub, trusted by this agent
	API  string // host:port of the HTTPS API
	CA   string // the agent's CA certificate file
	HTTP *http.Client
	cmd  *exec.Cmd
}

// Start makes a fresh root (named after prefix) that trusts a new bundle
// key and starts an agent on it; its log goes to TMPDIR/<root name>.log.
// prepare, when not nil, runs on the root before the agent starts.
func Start(bin, prefix string, prepare func(root string) error) (*Agent, error) {
	root, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	a := &Agent{Bin: bin, Root: root, Keys: root + "-keys"}
	if err := a.setUp(prepare); err != nil {
		a.Stop(false)
		return nil, err
	}
	return a, nil
}

func (a *Agent) setUp(prepare func(root string) error) error {
	if err := os.Chmod(a.Root, 0o755); err != nil {
		return err
	}
	if err := run(a.Bin, "bundle", "keygen", "--out", a.Keys); err != nil {
		return err
	}
	pub, err := os.ReadFile(filepath.Join(a.Keys, "bundle.pub"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(a.Root, "trust"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(a.Root, "trust", "bench.pub"), pub, 0o600); err != nil {
		return err
	}
	if prepare != nil {
		if err := prepare(a.Root); err != nil {
			return err
		}
	}
	a.cmd = exec.Command(a.Bin, "--root", a.Root, "agent", "--listen-api", "127.0.0.1:0",
		"--listen-health", "127.0.0.1:0", "--listen-mqtt", "127.0.0.1:0")
	logf, err := os.Create(filepath.Join(os.TempDir(), filepath.Base(a.Root)+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	if err := a.cmd.Start(); err != nil {
		return err
	}
	var info struct{ API, CA string }
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		data, err := os.ReadFile(filepath.Join(a.Root, "run", "agent.json"))
		if err == nil && json.Unmarshal(data, &info) == nil && info.API != "" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent on %s not serving after 30 s", a.Root)
		}
	}
	a.API, a.CA = info.API, info.CA
	cfg, err := a.AdminTLS()
	if err != nil {
		return err
	}
	a.HTTP = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg,
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}
	return nil
}

// AdminTLS is the client TLS configuration of the admin certificate.
func (a *Agent) AdminTLS() (*tls.Config, error) {
	caPEM, err := os.ReadFile(a.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(filepath.Join(a.Root, "certs", "admin.pem"), filepath.Join(a.Root, "certs", "admin-key.pem"))
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		ServerName: "localhost"}, nil
}

// Pid is the agent's process id (for its CPU time in /proc).
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Stop ends the agent (SIGTERM) and, unless keep, removes its root and keys.
func (a *Agent) Stop(keep bool) {
	if a.cmd != nil && a.cmd.Process != nil {
		a.cmd.Process.Signal(syscall.SIGTERM)
		a.cmd.Wait()
	}
	if !keep {
		os.RemoveAll(a.Root)
		os.RemoveAll(a.Keys)
	}
}

// Call makes an admin API request and decodes a 200 answer's JSON into out.
func (a *Agent) Call(method, path string, body any, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, "https://"+a.API+path, rd)
	if err != nil {
		return 0, err
	}
	req.Host = "localhost"
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && resp.StatusCode == 200 {
		return resp.StatusCode, json.Unmarshal(data, out)
	}
	return resp.StatusCode, nil
}

// Build signs the documents folder in into a bundle of the given version,
// with the binary, and returns the bundle's path (in TMPDIR).
func (a *Agent) Build(in string, version int) (string, error) {
	out := filepath.Join(os.TempDir(), fmt.Sprintf("%s-v%d.tar.gz", filepath.Base(a.Root), version))
	return out, run(a.Bin, "bundle", "build", "--in", in, "--key", filepath.Join(a.Keys, "bundle.key"),
		"--version", fmt.Sprint(version), "--out", out)
}

// Drop moves a built bundle into the inbox as NAME.part and renames it,
// and returns the moment of the rename.
func (a *Agent) Drop(bundle string) (time.Time, error) {
	inbox := filepath.Join(a.Root, "inbox")
	if err := os.MkdirAll(inbox, 0o700); err != nil {
		return time.Time{}, err
	}
	data, err := os.ReadFile(bundle)
	if err != nil {
		return time.Time{}, err
	}
	part := filepath.Join(inbox, filepath.Base(bundle)+".part")
	if err := os.WriteFile(part, data, 0o600); err != nil {
		return time.Time{}, err
	}
	os.Remove(bundle)
	t := time.Now()
	return t, os.Rename(part, strings.TrimSuffix(part, ".part"))
}

// PeakRSS is the agent process's peak resident set (VmHWM), e.g. "98 MB",
// or "?" when it cannot be read.
func (a *Agent) PeakRSS() string {
	if a.cmd == nil || a.cmd.Process == nil {
		return "?"
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", a.cmd.Process.Pid))
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmHWM:" {
			var kb int
			fmt.Sscan(f[1], &kb)
			return fmt.Sprintf("%d MB", kb>>10)
		}
	}
	return "?"
}

// CPUTime is the CPU time the agent process has used so far, all its
// threads (the first field of each /proc/PID/task/TID/schedstat, in ns),
// or 0 when it cannot be read. The difference over a step is what that
// step cost the agent, which other load on the machine disturbs less than
// wall time.
func (a *Agent) CPUTime() time.Duration {
	if a.cmd == nil || a.cmd.Process == nil {
		return 0
	}
	dir := fmt.Sprintf("/proc/%d/task", a.cmd.Process.Pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var total time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if err != nil {
			continue
		}
		var ns int64
		fmt.Sscan(string(data), &ns)
		total += time.Duration(ns)
	}
	return total
}

// LoadAvg is the first three fields of /proc/loadavg, printed beside
// every figure.
func LoadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %v\n%s", args, err, out)
	}
	return nil
}
