// Command elevate measures `warden elevate -- /bin/true` against
// `sudo -n /bin/true`, run by the same unprivileged user, alternating, in
// one run: warden under a policy that allows /bin/true for that user, sudo
// under the equivalent NOPASSWD rule in a temporary /etc/sudoers.d file.
// It needs root (it creates the user wdn-elevate-bench and the sudoers
// file, and removes both at the end).
//
//	go build -o bin/warden ./cmd/warden
//	go run ./bench/elevate --warden bin/warden --runs 50
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	benchUser = "wdn-elevate-bench"
	sudoers   = "/etc/sudoers.d/wdn-elevate-bench"
)

func main() {
	bin := flag.String("warden", "bin/warden", "warden binary")
	runs := flag.Int("runs", 50, "runs of each command")
	also := flag.String("also", "", "a third command to time alongside (inner figure), {root} replaced by the agent root")
	flag.Parse()
	if os.Geteuid() != 0 {
		fail("run as root: the benchmark creates a user and a sudoers rule")
	}
	abs, err := filepath.Abs(*bin)
	check(err)
	*bin = abs
	cleanup := setup()
	atExit = append(atExit, cleanup)
	defer cleanup()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() { <-sigs; fail("interrupted") }()

	root, stop := startAgent(*bin)
	atExit = append(atExit, stop)
	defer stop()
	uid, gid := lookup()
	warden := []string{*bin, "--root", root, "elevate", "--", "/bin/true"}
	sudo := []string{"/usr/bin/sudo", "-n", "/bin/true"}
	for range 3 { // warm both up (page cache, the agent's first request)
		once(uid, gid, warden)
		once(uid, gid, sudo)
	}
	var third []string
	if *also != "" {
		third = strings.Fields(strings.ReplaceAll(*also, "{root}", root))
	}
	var w, s, x []time.Duration
	for range *runs {
		w = append(w, once(uid, gid, warden))
		s = append(s, once(uid, gid, sudo))
		if third != nil {
			x = append(x, once(uid, gid, third))
		}
	}
	mw, ms := median(w), median(s)
	fmt.Printf("warden elevate -- /bin/true: median %s (min %s, max %s)\n", r(mw), r(slices.Min(w)), r(slices.Max(w)))
	fmt.Printf("sudo -n /bin/true:           median %s (min %s, max %s)\n", r(ms), r(slices.Min(s)), r(slices.Max(s)))
	if third != nil {
		fmt.Printf("inner: %s: median %s (min %s)\n", *also, r(median(x)), r(slices.Min(x)))
	}
	fmt.Printf("ratio warden/sudo: %.2f (%d runs each, alternating)\n", float64(mw)/float64(ms), *runs)
}

// setup creates the user and the sudoers rule; the returned func removes
// them (safe to call twice).
func setup() func() {
	exec.Command("userdel", benchUser).Run()
	if out, err := exec.Command("useradd", "-M", "-s", "/bin/sh", benchUser).CombinedOutput(); err != nil {
		fail(fmt.Sprintf("useradd: %v %s", err, out))
	}
	rule := benchUser + " ALL=(root) NOPASSWD: /bin/true, /usr/bin/true\n"
	tmp := sudoers + ".tmp"
	check(os.WriteFile(tmp, []byte(rule), 0o440))
	if out, err := exec.Command("visudo", "-cf", tmp).CombinedOutput(); err != nil {
		os.Remove(tmp)
		fail(fmt.Sprintf("visudo: %v %s", err, out))
	}
	check(os.Rename(tmp, sudoers))
	done := false
	return func() {
		if done {
			return
		}
		done = true
		os.Remove(sudoers)
		exec.Command("userdel", benchUser).Run()
	}
}

func lookup() (uint32, uint32) {
	u, err := user.Lookup(benchUser)
	check(err)
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return uint32(uid), uint32(gid)
}

// startAgent runs an agent on a fresh root with the allow policy applied.
func startAgent(bin string) (string, func()) {
	dir, err := os.MkdirTemp("", "warden-bench-elevate-")
	check(err)
	check(os.Chmod(dir, 0o755))
	root := filepath.Join(dir, "root")
	cmd := exec.Command(bin, "--root", root, "agent", "--listen-api", "127.0.0.1:0",
		"--listen-health", "127.0.0.1:0", "--listen-mqtt", "127.0.0.1:0")
	check(cmd.Start())
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		os.RemoveAll(dir)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(root, "run", "warden.sock")); err == nil {
			if _, err := os.Stat(filepath.Join(root, "run", "agent.json")); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			fail("agent did not start within 30 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	atExit = append(atExit, stop)
	doc := filepath.Join(dir, "policy.json")
	check(os.WriteFile(doc, []byte(`{"kind": "Policy", "id": "bench-true", "spec": {"name": "true as root",
 "type": "PrivilegeElevation", "status": "enforce", "priority": 50, "controls": ["allow"],
 "filters": {"users": ["`+benchUser+`"], "applications": [{"path": "/usr/bin/true"}]}}}`), 0o644))
	if out, err := exec.Command(bin, "--root", root, "apply", "-f", doc).CombinedOutput(); err != nil {
		stop()
		fail(fmt.Sprintf("apply: %v %s", err, out))
	}
	uid, gid := lookup()
	for i := 0; ; i++ { // until the engine has the policy
		if err := run(uid, gid, []string{bin, "--root", root, "elevate", "--", "/bin/true"}); err == nil {
			break
		} else if i == 200 {
			stop()
			fail(fmt.Sprintf("warden elevate -- /bin/true never succeeded: %v", err))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return root, stop
}

func run(uid, gid uint32, argv []string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C"}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// once times one run, from fork to exit.
func once(uid, gid uint32, argv []string) time.Duration {
	t := time.Now()
	if err := run(uid, gid, argv); err != nil {
		fail(err.Error())
	}
	return time.Since(t)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func r(d time.Duration) string { return d.Round(10 * time.Microsecond).String() }

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

// atExit undo what the benchmark made (the user, the sudoers rule, the
// agent), most recent first, when it fails half way.
var atExit []func()

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "bench/elevate:", msg)
	for i := len(atExit) - 1; i >= 0; i-- {
		atExit[i]()
	}
	os.Exit(1)
}
