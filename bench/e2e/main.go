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
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"warden/bench/agentproc"
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
	fmt.Printf("# warden e2e: %s, %d CPUs, load %s\n", bin, numCPU(), agentproc.LoadAvg())
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

// agentProc is one running `warden agent` on its own root; its methods
// end the benchmark on an error.
type agentProc struct{ *agentproc.Agent }

// startAgent starts an agent on a fresh root; prepare, when not nil, runs
// on the root before the agent starts.
func startAgent(prepare func(root string)) *agentProc {
	a, err := agentproc.Start(*wardenBin, "warden-e2e-", func(root string) error {
		if prepare != nil {
			prepare(root)
		}
		return nil
	})
	check(err)
	return &agentProc{a}
}

func (a *agentProc) stop() { a.Stop(*keep) }

func (a *agentProc) call(method, path string, body any, out any) (int, error) {
	return a.Call(method, path, body, out)
}

func (a *agentProc) build(in string, version int) string {
	b, err := a.Build(in, version)
	check(err)
	return b
}

func (a *agentProc) drop(bundle string) time.Time {
	t, err := a.Drop(bundle)
	check(err)
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
	return fmt.Sprintf("median %s  p99 %s  min %s  max %s  (n=%d, load %s)", r(s.med), r(s.p99), r(s.min), r(s.max), s.n, agentproc.LoadAvg())
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
