// Command startup measures how long `warden agent` takes from exec to
// answering /health, over several runs, on an empty root and on a root
// whose store holds a generation of N documents.
//
//	go build -o bin/warden ./cmd/warden
//	go run ./bench/startup --warden bin/warden --docs 10000 --runs 10
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"syscall"
	"time"
)

func main() {
	bin := flag.String("warden", "bin/warden", "warden binary")
	docs := flag.Int("docs", 0, "documents in the applied generation (0: empty store)")
	runs := flag.Int("runs", 10, "runs")
	flag.Parse()
	root, err := os.MkdirTemp("", "warden-startup")
	check(err)
	defer os.RemoveAll(root)
	check(os.Chmod(root, 0o755))
	if *docs > 0 {
		seed(*bin, root, *docs)
	}
	var times []time.Duration
	for i := 0; i < *runs; i++ {
		times = append(times, once(*bin, root))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	fmt.Printf("start to /health with %d documents: median %s, min %s, max %s (%d runs)\n",
		*docs, times[len(times)/2].Round(time.Millisecond), times[0].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), *runs)
}

// once starts the agent, waits for /health, stops it; it returns the time
// from exec to the first 200.
func once(bin, root string) time.Duration {
	os.Remove(filepath.Join(root, "run", "agent.json"))
	cmd := exec.Command(bin, "--root", root, "agent", "--listen-api", "127.0.0.1:0",
		"--listen-health", "127.0.0.1:0", "--listen-mqtt", "127.0.0.1:0")
	t0 := time.Now()
	check(cmd.Start())
	var took time.Duration
	for took == 0 {
		if time.Since(t0) > 30*time.Second {
			panic("agent did not serve within 30 s")
		}
		data, err := os.ReadFile(filepath.Join(root, "run", "agent.json"))
		if err != nil {
			time.Sleep(200 * time.Microsecond)
			continue
		}
		var info struct{ Health string }
		if json.Unmarshal(data, &info) != nil {
			continue
		}
		resp, err := http.Get("http://" + info.Health + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				took = time.Since(t0)
			}
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	return took
}

// seed applies a signed bundle of n policies to root through the inbox,
// then stops the agent.
func seed(bin, root string, n int) {
	dir, err := os.MkdirTemp("", "warden-startup-docs")
	check(err)
	defer os.RemoveAll(dir)
	docs := filepath.Join(dir, "docs")
	check(os.MkdirAll(filepath.Join(docs, "policies"), 0o755))
	for i := 0; i < n; i++ {
		doc := fmt.Sprintf(`{"kind": "Policy", "id": "p%05d", "spec": {"name": "Policy %d", "type": "PrivilegeElevation", "status": "enforce", "priority": %d, "controls": ["allow"], "filters": {"users": ["user%d"], "applications": [{"path": "/opt/app%d/bin/*"}]}}}`, i, i, i%100, i, i)
		check(os.WriteFile(filepath.Join(docs, "policies", fmt.Sprintf("p%05d.json", i)), []byte(doc), 0o644))
	}
	keys := filepath.Join(dir, "keys")
	run(bin, "bundle", "keygen", "--out", keys)
	check(os.MkdirAll(filepath.Join(root, "trust"), 0o700))
	data, err := os.ReadFile(filepath.Join(keys, "bundle.pub"))
	check(err)
	check(os.WriteFile(filepath.Join(root, "trust", "bench.pub"), data, 0o600))
	check(os.MkdirAll(filepath.Join(root, "inbox"), 0o700))
	run(bin, "bundle", "build", "--in", docs, "--key", filepath.Join(keys, "bundle.key"), "--version", "1",
		"--out", filepath.Join(root, "inbox", "seed.tar.gz"))
	cmd := exec.Command(bin, "--root", root, "agent", "--listen-api", "127.0.0.1:0",
		"--listen-health", "127.0.0.1:0", "--listen-mqtt", "127.0.0.1:0")
	check(cmd.Start())
	done := filepath.Join(root, "inbox", "done", "seed.tar.gz")
	for start := time.Now(); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(done); err == nil {
			break
		}
		if time.Since(start) > 2*time.Minute {
			panic("seed bundle not applied within 2 minutes")
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
}

func run(args ...string) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		panic(fmt.Sprintf("%v: %v\n%s", args, err, out))
	}
}

func check(err error) {
	if err != nil {
		panic(err)
	}
}
