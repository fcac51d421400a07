// Command fleet measures how a fleet of real agents follows its bundle
// server: N `warden agent` processes (separate roots, port 0) against
// (a) nginx serving the bundle as a static file, polled every pollSeconds
// with jitter, and (b) the reference backend with long polling. It
// reports, per mode: requests and bytes per agent-hour while nothing
// changes, total agent RSS, the server's CPU, and, after a new bundle is
// published, the time until each agent logs BUNDLE_APPLIED (p50, p99,
// max).
//
//	go build -o bin/warden ./cmd/warden
//	go run ./bench/fleet --warden bin/warden --agents 200 --idle 120s
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"warden/source/backend"
)

type config struct {
	bin       string
	agents    int
	poll      int
	longPoll  int
	idle      time.Duration
	parallel  int
	work      string
	modes     []string
	publishTO time.Duration
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-backend" {
		serveBackend(os.Args[2])
		return
	}
	var c config
	var modes string
	flag.StringVar(&c.bin, "warden", "bin/warden", "warden binary")
	flag.IntVar(&c.agents, "agents", 200, "agent processes")
	flag.IntVar(&c.poll, "poll", 60, "backend.pollSeconds")
	flag.IntVar(&c.longPoll, "longpoll", 30, "backend.longPollSeconds in long-polling mode")
	flag.DurationVar(&c.idle, "idle", 120*time.Second, "idle window over which requests and bytes are counted")
	flag.IntVar(&c.parallel, "parallel", 8, "agents started (and registered) at once")
	flag.StringVar(&modes, "modes", "static,longpoll", "modes to run: static (nginx), longpoll (reference backend)")
	flag.Parse()
	c.modes = strings.Split(modes, ",")
	c.publishTO = time.Duration(c.poll)*time.Second*12/10 + 60*time.Second
	var err error
	c.work, err = os.MkdirTemp("", "warden-fleet")
	check(err)
	defer os.RemoveAll(c.work)
	check(os.Chmod(c.work, 0o755))
	run(c.bin, "bundle", "keygen", "--out", filepath.Join(c.work, "keys"))
	fmt.Printf("fleet: %d agents, pollSeconds %d, longPollSeconds %d, idle window %s, %d CPUs, load %s\n",
		c.agents, c.poll, c.longPoll, c.idle, numCPU(), loadavg())
	var results []result
	for _, m := range c.modes {
		results = append(results, runMode(c, m))
	}
	fmt.Println()
	fmt.Println("| mode | agents | publish to BUNDLE_APPLIED p50 / p99 / max | requests per agent-hour idle | bytes per agent-hour idle (responses) | idle answers | agent RSS total (per agent) | server CPU idle / to deliver the new bundle | load (1 min) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		fmt.Println(r.row())
	}
}

type result struct {
	mode            string
	agents, applied int
	p50, p99, max   time.Duration
	reqPerHour      float64
	bytesPerHour    float64
	idleAnswers     string
	rssKB           int64
	cpuIdle         float64       // fraction of one core
	cpuPublish      time.Duration // CPU time from publish to the last agent's apply
	load            string
}

func (r result) row() string {
	return fmt.Sprintf("| %s | %d (%d applied) | %s / %s / %s | %.1f | %.0f | %s | %.0f MB (%.1f MB) | %.2f%% of a core / %s | %s |",
		r.mode, r.agents, r.applied, r.p50.Round(time.Millisecond), r.p99.Round(time.Millisecond), r.max.Round(time.Millisecond),
		r.reqPerHour, r.bytesPerHour, r.idleAnswers, float64(r.rssKB)/1024, float64(r.rssKB)/1024/float64(max(r.agents, 1)),
		100*r.cpuIdle, r.cpuPublish, r.load)
}

// server is the bundle host of one mode.
type server interface {
	url() string
	bundlePath() string
	pid() int
	counts() (requests, bytes int64, answers map[string]int64)
	stop()
}

func runMode(c config, mode string) result {
	dir := filepath.Join(c.work, mode)
	check(os.MkdirAll(dir, 0o755))
	var srv server
	switch mode {
	case "static":
		srv = startNginx(dir)
	case "longpoll":
		srv = startBackend(c, dir)
	default:
		panic("unknown mode " + mode)
	}
	defer srv.stop()
	longPoll := c.longPoll
	if mode == "static" {
		longPoll = 30 // the default: offered, ignored by nginx
	}
	settings := fmt.Sprintf(`{"kind": "Settings", "id": "agent", "spec": {"backend": {"url": %q, "group": "lab", "pollSeconds": %d, "longPollSeconds": %d}}}`,
		srv.url(), c.poll, longPoll)
	v1 := buildBundle(c, dir, 1, settings)
	publish(v1, srv.bundlePath())
	fmt.Printf("\n[%s] server at %s; starting %d agents\n", mode, srv.url(), c.agents)

	f := newFleet(c, dir, mode == "longpoll", srv.url())
	defer f.stop()
	f.start(v1)
	if n := f.waitApplied(1, 5*time.Minute); n < c.agents {
		fmt.Printf("[%s] only %d of %d agents applied the first bundle\n", mode, n, c.agents)
	}
	// Let every agent make its first poll (random offset up to a tenth of
	// the interval) before counting.
	time.Sleep(time.Duration(c.poll)*time.Second/10 + 5*time.Second)

	fmt.Printf("[%s] idle for %s (load %s)\n", mode, c.idle, loadavg())
	req0, bytes0, ans0 := srv.counts()
	cpu0 := cpuTicks(srv.pid())
	time.Sleep(c.idle)
	req1, bytes1, ans1 := srv.counts()
	cpu1 := cpuTicks(srv.pid())
	rss := f.rssKB()
	hours := c.idle.Hours()
	r := result{mode: mode, agents: c.agents, rssKB: rss, load: loadavg(),
		reqPerHour:   float64(req1-req0) / float64(c.agents) / hours,
		bytesPerHour: float64(bytes1-bytes0) / float64(c.agents) / hours,
		cpuIdle:      float64(cpu1-cpu0) / 100 / c.idle.Seconds()}
	var answers []string
	for k, v := range ans1 {
		if d := v - ans0[k]; d > 0 {
			answers = append(answers, fmt.Sprintf("%d× %s", d, k))
		}
	}
	sort.Strings(answers)
	r.idleAnswers = strings.Join(answers, ", ")

	v2 := buildBundle(c, dir, 2, settings)
	fmt.Printf("[%s] publishing version 2 (load %s)\n", mode, loadavg())
	cpu2 := cpuTicks(srv.pid())
	t0 := time.Now()
	publish(v2, srv.bundlePath())
	f.waitApplied(2, c.publishTO)
	r.cpuPublish = time.Duration(cpuTicks(srv.pid())-cpu2) * 10 * time.Millisecond

	lat := f.latencies(2, t0)
	r.applied = len(lat)
	if len(lat) > 0 {
		r.p50, r.p99, r.max = pct(lat, 50), pct(lat, 99), lat[len(lat)-1]
	}
	fmt.Println(r.row())
	return r
}

// buildBundle signs settings and one policy as version v with the warden
// CLI and returns the file.
func buildBundle(c config, dir string, v int, settings string) string {
	in := filepath.Join(dir, fmt.Sprintf("in-%d", v))
	check(os.MkdirAll(filepath.Join(in, "policies"), 0o755))
	check(os.WriteFile(filepath.Join(in, "settings.json"), []byte(settings), 0o644))
	policy := fmt.Sprintf(`{"kind": "Policy", "id": "deny-netcat", "spec": {"name": "Block netcat v%d", "type": "PrivilegeElevation",
 "status": "enforce", "priority": 100, "controls": ["deny"], "filters": {"applications": [{"path": "/usr/bin/nc*"}]}}}`, v)
	check(os.WriteFile(filepath.Join(in, "policies", "deny-netcat.json"), []byte(policy), 0o644))
	out := filepath.Join(dir, fmt.Sprintf("bundle-%d.tar.gz", v))
	run(c.bin, "bundle", "build", "--in", in, "--key", filepath.Join(c.work, "keys", "bundle.key"),
		"--version", strconv.Itoa(v), "--out", out)
	return out
}

// publish copies a bundle into place by rename, as operators do.
func publish(src, dst string) {
	data, err := os.ReadFile(src)
	check(err)
	check(os.MkdirAll(filepath.Dir(dst), 0o755))
	check(os.WriteFile(dst+".tmp", data, 0o644))
	check(os.Rename(dst+".tmp", dst))
}

func pct(sorted []time.Duration, p int) time.Duration {
	i := (len(sorted)*p + 99) / 100
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// cpuTicks is a process's user+system time in clock ticks (100 Hz).
func cpuTicks(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return u + st
}

// rssKB is a process's VmRSS.
func rssKB(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func numCPU() int {
	data, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(data), "\nprocessor") + 1
}

func run(bin string, args ...string) {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		panic(fmt.Sprintf("%s %s: %v\n%s", bin, strings.Join(args, " "), err, out))
	}
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}

// freeAddr is a loopback address that was free a moment ago.
func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer ln.Close()
	return ln.Addr().String()
}

// counter counts requests, response bytes (status line and headers
// estimated, body exact) and answers by status, for the reference backend
// (nginx has its access log).
type counter struct {
	h        http.Handler
	requests atomic.Int64
	bytes    atomic.Int64
	mu       sync.Mutex
	answers  map[string]int64
}

type countingWriter struct {
	http.ResponseWriter
	c    *counter
	code int
	body int64
}

func (w *countingWriter) WriteHeader(code int) {
	w.code = code
	n := len("HTTP/1.1 200 OK\r\n\r\n")
	for k, vs := range w.Header() {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	w.c.bytes.Add(int64(n) + int64(len("Date: Mon, 30 Nov 2026 23:00:00 GMT\r\n")))
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.body += int64(n)
	w.c.bytes.Add(int64(n))
	return n, err
}

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/_bench/stats" {
		c.mu.Lock()
		json.NewEncoder(w).Encode(map[string]any{"requests": c.requests.Load(), "bytes": c.bytes.Load(), "answers": c.answers})
		c.mu.Unlock()
		return
	}
	cw := &countingWriter{ResponseWriter: w, c: c}
	c.h.ServeHTTP(cw, r)
	if cw.code == 0 {
		return // client went away while held
	}
	c.requests.Add(1)
	key := fmt.Sprintf("%s %d", r.Method, cw.code)
	if cw.code == http.StatusNotModified && cw.body == 0 {
		key += " (no body)"
	}
	c.mu.Lock()
	c.answers[key]++
	c.mu.Unlock()
}

// serveBackend is the child process of long-polling mode: the reference
// backend over DIR with counters, its address printed on stdout.
func serveBackend(dir string) {
	s, err := backend.New(dir, nil)
	check(err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: &counter{h: s.Handler("/v1"), answers: map[string]int64{}}, ReadHeaderTimeout: 10 * time.Second}
	srv.Serve(ln)
}

type backendServer struct {
	cmd  *exec.Cmd
	addr string
	dir  string
}

func startBackend(c config, dir string) *backendServer {
	bdir := filepath.Join(dir, "backend")
	check(os.MkdirAll(filepath.Join(bdir, "bundles"), 0o700))
	check(os.WriteFile(filepath.Join(bdir, "tokens.json"), []byte(`[{"token": "fleet-bench", "group": "lab"}]`), 0o600))
	self, err := os.Executable()
	check(err)
	cmd := exec.Command(self, "serve-backend", bdir)
	cmd.Stderr = io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	check(err)
	check(cmd.Start())
	addr, err := bufio.NewReader(out).ReadString('\n')
	check(err)
	return &backendServer{cmd: cmd, addr: strings.TrimSpace(addr), dir: bdir}
}

func (b *backendServer) url() string        { return "http://" + b.addr + "/v1" }
func (b *backendServer) bundlePath() string { return filepath.Join(b.dir, "bundles", "lab.tar.gz") }
func (b *backendServer) pid() int           { return b.cmd.Process.Pid }
func (b *backendServer) stop()              { b.cmd.Process.Kill(); b.cmd.Wait() }

func (b *backendServer) counts() (int64, int64, map[string]int64) {
	resp, err := http.Get("http://" + b.addr + "/_bench/stats")
	check(err)
	defer resp.Body.Close()
	var s struct {
		Requests, Bytes int64
		Answers         map[string]int64
	}
	check(json.NewDecoder(resp.Body).Decode(&s))
	return s.Requests, s.Bytes, s.Answers
}
