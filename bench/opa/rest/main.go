// Command rest compares warden's decision API with OPA's REST server on
// the same rules, on the same machine, driven by the same client: the
// real `warden agent` holding 10,000 policies (POST /api/v1/evaluate over
// mTLS, every decision audited, as always) and `opa run --server` holding
// the same policies translated to Rego (POST /v1/data/warden/decision over
// TLS, decision logging off).
//
// The client is closed-loop: --conns connections each send a request as
// soon as the last answer came, for --for per run, runs alternating
// between the two servers. Both servers and the client share the
// machine's cores, so each run also reports the CPU time per decision of
// the server process and of the client (from /proc and getrusage) and
// how busy the whole machine was.
//
// "At equal p99": with several --conns levels (a sweep), each server's
// throughput is its best median throughput among the levels whose median
// p99 is within --p99; the ratio of those two is the figure. With one
// level it is the plain ratio at that concurrency, p99s printed beside.
//
//	make build
//	GOBIN=/tmp/opa go install github.com/open-policy-agent/opa@v1.22.2
//	cd bench/opa && go run ./rest --warden ../../bin/warden --opa /tmp/opa/opa --conns 8,16,32,64 --runs 3
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"warden/bench/agentproc"
)

var (
	wardenBin = flag.String("warden", "../../bin/warden", "the warden binary")
	opaBin    = flag.String("opa", "opa", "the opa binary (go install github.com/open-policy-agent/opa@v1.22.2)")
	rules     = flag.Int("rules", 9999, "policies (with Settings, the bundle limit of 10,000 documents)")
	connList  = flag.String("conns", "32", "concurrent client connections; a comma-separated list sweeps the levels (at most 64: the agent answers 429 past 64 requests in flight for one identity)")
	budget    = flag.Duration("p99", 10*time.Millisecond, "p99 budget for the throughput at equal p99 (with a sweep)")
	runFor    = flag.Duration("for", 5*time.Second, "length of each run")
	runs      = flag.Int("runs", 5, "runs of each server at each level, alternating")
	baseline  = flag.String("baseline", "", "a second warden binary driven in the same runs (before/after a change)")
	h2        = flag.Bool("h2", false, "let the client speak HTTP/2 to a server that offers it (ALPN); default HTTP/1.1 to both")
	mix       = flag.String("mix", "synthetic", "synthetic: policytest's policies and requests (those of the in-process comparison); tools: dev-tools-like policies with requests that match their group")
)

func main() {
	flag.Parse()
	levels := parseLevels(*connList)
	dir, err := os.MkdirTemp("", "warden-rest-")
	check(err)
	defer os.RemoveAll(dir)
	check(os.Chmod(dir, 0o755))
	docs, reqs := workload(*mix, *rules)
	servers := []*server{startWarden(dir, docs, "warden", *wardenBin)}
	if *baseline != "" {
		servers = append(servers, startWarden(dir, docs, "baseline", *baseline))
	}
	o := startOPA(dir, docs)
	servers = append(servers, o)
	defer stopAll()

	// They answer the same: a sample of requests decided by each.
	for _, r := range reqs[:64] {
		od := o.decide(r)
		for _, s := range servers[:len(servers)-1] {
			if d := s.decide(r); d != od {
				fail("%s and OPA disagree on %s: %q vs %q", s.name, r, d, od)
			}
		}
	}
	for _, s := range servers {
		fmt.Printf("# %s answers over %s\n", s.name, s.proto)
	}
	fmt.Printf("# %d policies, %s mix, %d CPUs, %d runs of %s per server and level, load %s\n",
		*rules, *mix, runtime.NumCPU(), *runs, *runFor, agentproc.LoadAvg())
	meds := make([][]result, len(servers)) // by server, by level
	for _, n := range levels {
		rs := make([][]result, len(servers))
		for i := 0; i < *runs; i++ {
			line := fmt.Sprintf("  %d conns, run %d:", n, i+1)
			for k, s := range servers {
				r := drive(s, reqs, n)
				rs[k] = append(rs[k], r)
				line += fmt.Sprintf(" %s %s |", s.name, r)
			}
			fmt.Println(strings.TrimSuffix(line, " |"))
		}
		line := fmt.Sprintf("%d conns, median:", n)
		for k, s := range servers {
			meds[k] = append(meds[k], median(rs[k]))
			line += fmt.Sprintf(" %s %s |", s.name, meds[k][len(meds[k])-1])
		}
		fmt.Printf("%s load %s\n", line, agentproc.LoadAvg())
	}
	fmt.Println()
	fmt.Println("warden POST /api/v1/evaluate (mTLS, every decision audited); OPA POST /v1/data/warden/decision (TLS, no decision log)")
	for k, s := range servers {
		for i, n := range levels {
			fmt.Printf("  %-8s %3d conns: %s\n", s.name, n, meds[k][i].long())
		}
	}
	om := meds[len(servers)-1]
	oc := medianCPU(om)
	for k, s := range servers[:len(servers)-1] {
		wm := meds[k]
		if len(levels) == 1 {
			fmt.Printf("%s/OPA throughput at %d connections: %.2fx (p99 %s vs %s)\n",
				s.name, levels[0], wm[0].rate/om[0].rate, ms(wm[0].p99), ms(om[0].p99))
		} else {
			wb, ob := best(wm, *budget), best(om, *budget)
			if wb == nil || ob == nil {
				fmt.Printf("%s/OPA at p99 <= %s: not both within the budget (%s %v, OPA %v)\n", s.name, ms(*budget), s.name, wb != nil, ob != nil)
			} else {
				fmt.Printf("%s/OPA throughput at equal p99 (<= %s): %.2fx (%s %.0f/s at %d conns, p99 %s; OPA %.0f/s at %d conns, p99 %s)\n",
					s.name, ms(*budget), wb.rate/ob.rate, s.name, wb.rate, wb.conns, ms(wb.p99), ob.rate, ob.conns, ms(ob.p99))
			}
		}
		wc := medianCPU(wm)
		fmt.Printf("%s/OPA server CPU per decision: %.0f µs vs %.0f µs: OPA/%s %.2fx (client %.0f µs vs %.0f µs)\n",
			s.name, wc.server, oc.server, s.name, oc.server/wc.server, wc.client, oc.client)
	}
	fmt.Printf("load %s\n", agentproc.LoadAvg())
}

func parseLevels(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fail("--conns: %q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out
}

func check(err error) {
	if err != nil {
		fail("%v", err)
	}
}

// onExit stops the servers started so far (startWarden and startOPA add
// to it), also when the run fails.
var (
	exitMu sync.Mutex
	onExit []func()
)

func stopAll() {
	exitMu.Lock()
	defer exitMu.Unlock()
	for i := len(onExit) - 1; i >= 0; i-- {
		onExit[i]()
	}
	onExit = nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "rest: "+format+"\n", args...)
	stopAll()
	os.Exit(1)
}
