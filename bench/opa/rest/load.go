package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// result is one run (or the median of runs) against one server.
type result struct {
	conns         int
	rate          float64 // decisions per second
	p50, p99, max time.Duration
	cpu           cpuShare
}

// cpuShare is CPU time per decision in µs: of the server process, of this
// client, of the kernel outside any process (kernel threads such as the
// block layer's kworkers, interrupts and softirqs: where much of an
// fsync's cost lands), and of everything else on the machine (other
// processes), and how many cores the machine was busy on average.
type cpuShare struct {
	server, client, kernel, others float64
	busyCores                      float64
}

func (r result) String() string {
	return fmt.Sprintf("%.0f/s p50 %s p99 %s", r.rate, ms(r.p50), ms(r.p99))
}

// long adds the CPU split.
func (r result) long() string {
	return fmt.Sprintf("%.0f/s p50 %s p99 %s, CPU/decision server %.0f µs client %.0f µs kernel %.0f µs others %.0f µs (busy %.2f cores)",
		r.rate, ms(r.p50), ms(r.p99), r.cpu.server, r.cpu.client, r.cpu.kernel, r.cpu.others, r.cpu.busyCores)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

// median is the run with the median throughput, with the median p99 and
// the median CPU shares of the runs.
func median(rs []result) result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b result) int { return int(a.rate - b.rate) })
	m := s[len(s)/2]
	m.p99 = medianOf(rs, func(r result) float64 { return float64(r.p99) }, func(v float64) time.Duration { return time.Duration(v) })
	m.cpu = medianCPU(rs)
	return m
}

func medianCPU(rs []result) cpuShare {
	id := func(v float64) float64 { return v }
	return cpuShare{
		server:    medianOf(rs, func(r result) float64 { return r.cpu.server }, id),
		client:    medianOf(rs, func(r result) float64 { return r.cpu.client }, id),
		kernel:    medianOf(rs, func(r result) float64 { return r.cpu.kernel }, id),
		others:    medianOf(rs, func(r result) float64 { return r.cpu.others }, id),
		busyCores: medianOf(rs, func(r result) float64 { return r.cpu.busyCores }, id),
	}
}

func medianOf[T any](rs []result, f func(result) float64, to func(float64) T) T {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return to(v[len(v)/2])
}

// best is the highest-throughput level whose p99 is within budget, or nil.
func best(rs []result, budget time.Duration) *result {
	var b *result
	for i := range rs {
		if rs[i].p99 <= budget && (b == nil || rs[i].rate > b.rate) {
			b = &rs[i]
		}
	}
	return b
}

// drive keeps conns requests in flight for --for and measures.
func drive(s *server, reqs [][]byte, conns int) result {
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	var lean []*leanConn
	if *leanFlag {
		lean = s.leanConns(conns)
	}
	c0 := sample(s.pid())
	stop := time.Now().Add(*runFor)
	t0 := time.Now()
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			mine := make([]time.Duration, 0, 4096)
			var buf []byte
			for i := c; ; i += conns {
				t := time.Now()
				if !t.Before(stop) {
					break
				}
				k := i % len(reqs)
				var status int
				var body []byte
				if lean != nil {
					var err error
					status, body, err = lean[c].do(s.wire[k], buf)
					if err != nil {
						fail("%s: %v", s.name, err)
					}
					buf = body
				} else {
					resp, err := s.client.Post(s.url, "application/json", bytes.NewReader(s.body(reqs[k])))
					check(err)
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				d := time.Since(t)
				if status != 200 {
					fail("%s: status %d: %s", s.name, status, body)
				}
				if !s.floor && !answerIs(body, s.want[k], s.answer) {
					fail("%s: answer to %s is %s, want %q", s.name, reqs[k], body, s.want[k])
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	el := time.Since(t0)
	c1 := sample(s.pid())
	slices.Sort(lat)
	n := float64(len(lat))
	per := func(d time.Duration) float64 { return float64(d) / 1e3 / n }
	busy := c1.machine - c0.machine
	server, client, kernel := c1.server-c0.server, c1.client-c0.client, c1.kernel-c0.kernel
	return result{conns: conns, rate: n / el.Seconds(), p50: lat[len(lat)/2], p99: lat[len(lat)*99/100], max: lat[len(lat)-1],
		cpu: cpuShare{server: per(server), client: per(client), kernel: per(kernel),
			others: per(max(busy-server-client-kernel, 0)), busyCores: float64(busy) / float64(el)}}
}

// cpuSample is cumulative CPU time (user and system) of the server
// process, of this process, of the kernel outside processes, and of the
// whole machine.
type cpuSample struct{ server, client, kernel, machine time.Duration }

const tick = 10 * time.Millisecond // USER_HZ (getconf CLK_TCK) is 100 on Linux

func sample(pid int) cpuSample {
	var s cpuSample
	s.server, _ = procCPU(strconv.Itoa(pid))
	// Kernel threads: the children of kthreadd (pid 2).
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if t, ppid := procCPU(e.Name()); ppid == 2 {
			s.kernel += t
		}
	}
	var ru syscall.Rusage
	check(syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	s.client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	// /proc/stat "cpu" line: user nice system idle iowait irq softirq
	// steal; busy is all but idle, iowait and steal (the hypervisor's).
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0])
		for _, i := range []int{1, 2, 3, 6, 7} {
			n, _ := strconv.ParseInt(f[i], 10, 64)
			s.machine += time.Duration(n) * tick
			if i >= 6 { // irq, softirq
				s.kernel += time.Duration(n) * tick
			}
		}
	}
	return s
}

// procCPU is a process's user and system time and its parent's pid, from
// /proc/PID/stat (fields 4, 14 and 15; counted after the ")" that ends
// the command name).
func procCPU(pid string) (time.Duration, int) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(f) < 13 {
		return 0, 0
	}
	ppid, _ := strconv.Atoi(f[1])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+st) * tick, ppid
}
