// Command rest compares warden's decision API with OPA's REST server on
// the same rules, on the same machine, driven by the same client: the
// real `warden agent` holding 10,000 policies (POST /api/v1/evaluate over
// mTLS, every decision audited, as always) and `opa run --server` holding
// the same policies translated to Rego (POST /v1/data/warden/decision over
// TLS, decision logging off).
//
// The client is closed-loop: --conns connections each send a request as
// soon as the last answer came, for --for per run; every run visits each
// connection level and each server in turn, and measuring starts once
// both servers are idle after their start. Both servers and the client
// share the machine's cores, so each run also reports CPU time per
// decision of the server process, of the client, of the kernel outside
// processes and of everything else (from /proc and getrusage), and how
// busy the whole machine was. Both answer over HTTP/1.1 (neither offers
// HTTP/2 by ALPN as they are started here).
//
// The client is lean by default (lean.go): each connection writes request
// bytes built before the runs and reads only the status line,
// Content-Length and body, about a third of net/http's client CPU per
// decision; that CPU is on the cores the servers share, and it is the
// same for both. Every answer is checked: status 200, and the decision
// and policy OPA and warden gave that request before the runs (they must
// agree on every request). --lean=false drives with net/http's client.
//
// "At equal p99": with several --conns levels (a sweep), each server's
// throughput at a p99 budget is its best median throughput among the
// levels whose median p99 is within the budget; the ratio of those two
// is the figure, for each budget of --p99. Each level's own ratio is
// printed too.
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
	budgetArg = flag.String("p99", "10ms,20ms", "p99 budgets for the throughput at equal p99, comma-separated")
	runFor    = flag.Duration("for", 5*time.Second, "length of each run")
	runs      = flag.Int("runs", 5, "runs of each server at each level, alternating")
	baseline  = flag.String("baseline", "", "a second warden binary driven in the same runs (before/after a change)")
	h2        = flag.Bool("h2", false, "let the client speak HTTP/2 to a server that offers it (ALPN); default HTTP/1.1 to both")
	floorFlag = flag.Bool("floor", false, "drive a third server in the same runs: Go's net/http HTTPS server answering a fixed body, deciding nothing (floor.go)")
	leanFlag  = flag.Bool("lean", true, "drive with the lean client (pre-built requests over tls.Conn, reads status, Content-Length and body); false: net/http's client")
	mix       = flag.String("mix", "synthetic", "synthetic: policytest's policies and requests (those of the in-process comparison); tools: dev-tools-like policies with requests that match their group")
)

func main() {
	if len(os.Args) == 5 && os.Args[1] == floorArg {
		serveFloor(os.Args[2], os.Args[3], os.Args[4])
		return
	}
	flag.Parse()
	levels := parseLevels(*connList)
	var budgets []time.Duration
	for _, f := range strings.Split(*budgetArg, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil {
			fail("--p99: %v", err)
		}
		budgets = append(budgets, d)
	}
	dir, err := os.MkdirTemp("", "warden-rest-")
	check(err)
	defer os.RemoveAll(dir)
	check(os.Chmod(dir, 0o755))
	docs, reqs := workload(*mix, *rules)
	servers := []*server{startWarden(dir, docs, "warden", *wardenBin)}
	if *baseline != "" {
		servers = append(servers, startWarden(dir, docs, "baseline", *baseline))
	}
	if *floorFlag {
		f := startFloor(dir)
		f.decide(reqs[0])
		servers = append(servers, f)
	}
	o := startOPA(dir, docs)
	servers = append(servers, o)
	defer stopAll()

	// They answer the same, every request; those answers are what each
	// answer under load is checked against.
	want := make([]string, len(reqs))
	for i, r := range reqs {
		want[i] = o.decide(r)
		for _, s := range servers[:len(servers)-1] {
			if s.floor {
				continue
			}
			if d := s.decide(r); d != want[i] {
				fail("%s and OPA disagree on %s: %q vs %q", s.name, r, d, want[i])
			}
		}
	}
	for _, s := range servers {
		s.prepare(reqs, want)
	}
	for _, s := range servers {
		fmt.Printf("# %s answers over %s\n", s.name, s.proto)
	}
	if *leanFlag {
		fmt.Println("# client: lean (pre-built requests over tls.Conn, HTTP/1.1 keep-alive; every answer's status, decision and policy checked)")
	} else {
		fmt.Println("# client: net/http (every answer's status, decision and policy checked)")
	}
	fmt.Printf("# %d policies, %s mix, %d CPUs, %d runs of %s per server and level, load %s\n",
		*rules, *mix, runtime.NumCPU(), *runs, *runFor, agentproc.LoadAvg())
	// Every run visits every level and server in turn, so a change in the
	// machine's load falls on all of them alike.
	all := make([][][]result, len(servers)) // by server, by level, by run
	for k := range all {
		all[k] = make([][]result, len(levels))
	}
	for i := 0; i < *runs; i++ {
		for j, n := range levels {
			line := fmt.Sprintf("  run %d, %d conns:", i+1, n)
			for k, s := range servers {
				r := drive(s, reqs, n)
				all[k][j] = append(all[k][j], r)
				line += fmt.Sprintf(" %s %s |", s.name, r)
			}
			fmt.Printf("%s load %s\n", line, agentproc.LoadAvg())
		}
	}
	meds := make([][]result, len(servers)) // by server, by level
	for k := range servers {
		for j := range levels {
			meds[k] = append(meds[k], median(all[k][j]))
		}
	}
	fmt.Println()
	fmt.Println("medians; warden POST /api/v1/evaluate (mTLS, every decision audited); OPA POST /v1/data/warden/decision (TLS, no decision log)")
	for k, s := range servers {
		for j, n := range levels {
			fmt.Printf("  %-8s %3d conns: %s\n", s.name, n, meds[k][j].long())
		}
	}
	om := meds[len(servers)-1]
	for k, s := range servers[:len(servers)-1] {
		wm := meds[k]
		line := s.name + "/OPA by level:"
		for j, n := range levels {
			line += fmt.Sprintf(" %d conns %.2fx (p99 %s vs %s, server CPU OPA/%s %.2fx);", n, wm[j].rate/om[j].rate,
				ms(wm[j].p99), ms(om[j].p99), s.name, om[j].cpu.server/wm[j].cpu.server)
		}
		fmt.Println(strings.TrimSuffix(line, ";"))
		for _, b := range budgets {
			wb, ob := best(wm, b), best(om, b)
			if wb == nil || ob == nil {
				fmt.Printf("%s/OPA at p99 <= %s: not both within it (%s %v, OPA %v)\n", s.name, ms(b), s.name, wb != nil, ob != nil)
				continue
			}
			fmt.Printf("%s/OPA throughput at equal p99 (<= %s): %.2fx (%s %.0f/s at %d conns, p99 %s; OPA %.0f/s at %d conns, p99 %s)\n",
				s.name, ms(b), wb.rate/ob.rate, s.name, wb.rate, wb.conns, ms(wb.p99), ob.rate, ob.conns, ms(ob.p99))
		}
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
