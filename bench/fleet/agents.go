package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"
)

// fleet is N agent processes, each on its own root, with what their logs
// said: when each applied which bundle version.
type fleet struct {
	c        config
	dir      string
	register bool
	url      string

	cmds []*exec.Cmd
	wg   sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	applied []map[int64]time.Time // per agent: version -> when its log said so
}

func newFleet(c config, dir string, register bool, url string) *fleet {
	f := &fleet{c: c, dir: dir, register: register, url: url,
		cmds: make([]*exec.Cmd, c.agents), applied: make([]map[int64]time.Time, c.agents)}
	f.cond = sync.NewCond(&f.mu)
	for i := range f.applied {
		f.applied[i] = map[int64]time.Time{}
	}
	return f
}

func (f *fleet) root(i int) string { return filepath.Join(f.dir, "agents", fmt.Sprintf("%03d", i)) }

// start registers (long-polling mode) and starts every agent, a few at a
// time, and seeds each with the first bundle through its inbox (it
// carries the Settings that name the server).
func (f *fleet) start(seed string) {
	pub, err := os.ReadFile(filepath.Join(f.c.work, "keys", "bundle.pub"))
	check(err)
	sem := make(chan struct{}, f.c.parallel)
	var wg sync.WaitGroup
	for i := range f.c.agents {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			root := f.root(i)
			check(os.MkdirAll(filepath.Join(root, "trust"), 0o700))
			check(os.Chmod(filepath.Dir(root), 0o755))
			check(os.Chmod(root, 0o755))
			check(os.WriteFile(filepath.Join(root, "trust", "fleet.pub"), pub, 0o600))
			if f.register {
				run(f.c.bin, "--root", root, "register", "--backend", f.url, "--token", "fleet-bench")
			}
			f.startAgent(i)
			f.seed(i, seed)
		}()
	}
	wg.Wait()
}

func (f *fleet) startAgent(i int) {
	root := f.root(i)
	cmd := exec.Command(f.c.bin, "--root", root, "agent", "--listen-api", "127.0.0.1:0",
		"--listen-health", "127.0.0.1:0", "--listen-mqtt", "127.0.0.1:0", "--log-format", "json")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	check(err)
	check(cmd.Start())
	f.cmds[i] = cmd
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.watch(i, stderr)
	}()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(root, "run", "agent.json")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			panic("agent " + root + " did not start in 2 minutes")
		}
	}
}

// watch reads an agent's JSON log and notes each "bundle applied" line
// with the time it was read (the pipe is read as it is written).
func (f *fleet) watch(i int, r interface{ Read([]byte) (int, error) }) {
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Msg     string `json:"msg"`
			Version int64  `json:"version"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "bundle applied" {
			continue
		}
		now := time.Now()
		f.mu.Lock()
		f.applied[i][line.Version] = now
		f.cond.Broadcast()
		f.mu.Unlock()
	}
}

// seed drops the first bundle into agent i's inbox (written as .part,
// then renamed).
func (f *fleet) seed(i int, bundle string) {
	data, err := os.ReadFile(bundle)
	check(err)
	dst := filepath.Join(f.root(i), "inbox", "seed.tar.gz")
	check(os.WriteFile(dst+".part", data, 0o600))
	check(os.Rename(dst+".part", dst))
}

// waitApplied waits until every agent applied version v or d passes, and
// returns how many did.
func (f *fleet) waitApplied(v int64, d time.Duration) int {
	deadline := time.Now().Add(d)
	timer := time.AfterFunc(d, func() { f.mu.Lock(); f.cond.Broadcast(); f.mu.Unlock() })
	defer timer.Stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		n := 0
		for _, a := range f.applied {
			if _, ok := a[v]; ok {
				n++
			}
		}
		if n == len(f.applied) || time.Now().After(deadline) {
			return n
		}
		f.cond.Wait()
	}
}

// latencies are the times from t0 to each agent's application of v, sorted.
func (f *fleet) latencies(v int64, t0 time.Time) []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []time.Duration
	for _, a := range f.applied {
		if t, ok := a[v]; ok {
			out = append(out, t.Sub(t0))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (f *fleet) rssKB() int64 {
	var total int64
	for _, c := range f.cmds {
		if c != nil && c.Process != nil {
			total += rssKB(c.Process.Pid)
		}
	}
	return total
}

// stop ends every agent with SIGTERM and waits for them.
func (f *fleet) stop() {
	for _, c := range f.cmds {
		if c != nil && c.Process != nil {
			c.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, c := range f.cmds {
		if c != nil && c.Process != nil {
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				c.Process.Kill()
				<-done
			}
		}
	}
	f.wg.Wait()
}
