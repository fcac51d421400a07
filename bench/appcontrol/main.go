// Command appcontrol measures what application control costs an exec.
//
// It mounts two small tmpfs of its own (never a shared filesystem), copies
// /usr/bin/true into both, and runs the exec controller with Settings
// applicationControl.mounts naming only the first and 20 ApplicationControl
// policies, none of which matches. Batches of execs (a shell loop, so that
// the execs are not the controller's own children) alternate between the
// marked mount ("on") and the unmarked one ("off"), in one run; the report
// is the median cost per exec of each and their ratio. Three such rows:
// root's program, which no policy could match for anyone, so that the
// kernel answers its execs by itself (an ignore mark, the goal's figure);
// a user-owned copy, which never gets one, so that every exec is a round
// trip to the controller answered from its decision cache; and a control
// with neither side watched, the noise floor of the run. Each row is
// measured twice: in batches of shell loops (the execs are the shell's),
// and one exec at a time, on and off in turn, from a child process of the
// bench (steadier: load that drifts touches both sides alike).
//
// It then measures the first exec of a file that must be hashed (a policy
// filters on a sha256, so every new file is read once): fresh copies of a
// small and a 10 MiB program, first exec on the marked mount against the
// same on the unmarked one.
//
// With -plain MARKED,UNMARKED it runs no controller and only times the two
// programs given (bench/appcontrol/fapolicyd.sh uses it for fapolicyd).
//
//	sudo go run ./bench/appcontrol [-execs 1000] [-batch 50]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"warden/appcontrol"
	"warden/audit"
	"warden/schema"
	"warden/state"
)

func main() {
	execs := flag.Int("execs", 1000, "execs per side")
	batch := flag.Int("batch", 50, "execs per timed batch")
	plain := flag.String("plain", "", "MARKED,UNMARKED: only time these two programs")
	firsts := flag.Int("firsts", 30, "fresh files per first-exec measurement")
	drive := flag.String("drive", "", "ON,OFF: (internal) exec the two programs alternately, one at a time, and print the per-exec medians")
	flag.Parse()
	if *drive != "" {
		on, off, _ := strings.Cut(*drive, ",")
		driveExecs(on, off, *execs)
		return
	}
	// Output piped to head must not kill the run before it unmounts.
	signal.Ignore(syscall.SIGPIPE)
	if *plain != "" {
		on, off, ok := strings.Cut(*plain, ",")
		if !ok {
			log.Fatal("-plain MARKED,UNMARKED")
		}
		sideBySide("plain", on, off, *execs, *batch)
		return
	}
	if os.Geteuid() != 0 {
		log.Fatal("run as root: fanotify permission events and mounts")
	}
	dir, err := os.MkdirTemp("", "wdn-appctl-bench")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	marked, unmarked := mount(dir, "on"), mount(dir, "off")
	defer unix.Unmount(marked, unix.MNT_DETACH)
	defer unix.Unmount(unmarked, unix.MNT_DETACH)
	on, off := filepath.Join(marked, "true"), filepath.Join(unmarked, "true")
	copyFile("/usr/bin/true", on, 0)
	copyFile("/usr/bin/true", off, 0)

	st, err := state.Open(filepath.Join(dir, "store"), state.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	aw, err := audit.NewWriter(st, audit.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer aw.Close()
	c, err := appcontrol.New(appcontrol.Options{Root: filepath.Join(dir, "root"), Store: st, Audit: aw,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	apply(st, 1, marked, "")
	waitActive(c)
	fmt.Printf("machine: %s, %d CPUs; kernel %s; load average %s\n", hostCPU(), cpus(), kernel(), loadavg())
	s := c.Stats()
	// The goal's figure: root's program in root's folders, which no policy
	// could match for anyone, so from its second exec the kernel answers
	// by itself (an ignore mark on its inode).
	e0, m0 := s.Events.Load(), s.IgnoreMarks.Load()
	sideBySide("warden, 20 policies none matching (kernel answers: ignore mark)", on, off, *execs, *batch)
	fmt.Printf("  controller: %d events for %d execs on the watched mount, %d ignore marks set\n",
		s.Events.Load()-e0, 2**execs+*batch+20, s.IgnoreMarks.Load()-m0)

	// The same with every exec a round trip to the agent answered from its
	// decision cache: a file owned by a user never gets an ignore mark.
	uOn, uOff := filepath.Join(marked, "true-u"), filepath.Join(unmarked, "true-u")
	for _, p := range []string{uOn, uOff} {
		copyFile("/usr/bin/true", p, 0)
		if err := os.Chown(p, 65534, 65534); err != nil {
			log.Fatal(err)
		}
	}
	e0, c0, n0 := s.Events.Load(), s.Cached.Load(), s.CachedNanos.Load()
	cpuOn := sideBySide("warden, 20 policies none matching (agent answers from its cache: user-owned file)", uOn, uOff, *execs, *batch)
	fmt.Printf("  controller: %d events, %d from the cache (%v each, event read to answer written), %d fallbacks; agent CPU (user+sys) per exec on the watched mount: %v\n",
		s.Events.Load()-e0, s.Cached.Load()-c0, time.Duration((s.CachedNanos.Load()-n0)/max(s.Cached.Load()-c0, 1)), s.Fallback.Load(), cpuOn/time.Duration(*execs))

	// The noise floor of this run: the same measurement with neither side
	// watched (two copies on the unwatched mount).
	ctl := filepath.Join(unmarked, "true-c")
	copyFile("/usr/bin/true", ctl, 0)
	sideBySide("control, neither side watched", ctl, off, *execs, *batch)

	// First exec of a file that needs hashing.
	apply(st, 2, marked, strings.Repeat("ab", 32))
	waitActive(c)
	for _, size := range []int64{0, 10 << 20} {
		var tOn, tOff, tAgain []time.Duration
		for i := range *firsts {
			a, b := filepath.Join(marked, fmt.Sprintf("f%d-%d", size, i)), filepath.Join(unmarked, fmt.Sprintf("f%d-%d", size, i))
			copyFile("/usr/bin/true", a, size)
			copyFile("/usr/bin/true", b, size)
			tOff = append(tOff, timeOne(b))
			tOn = append(tOn, timeOne(a))
			tAgain = append(tAgain, timeOne(a))
			os.Remove(a)
			os.Remove(b)
		}
		fmt.Printf("  load average %s\n", loadavg())
		fmt.Printf("first exec, %s program (sha256 needed): on %v, off %v, +%v; second exec on %v (median of %d, each `sh -c PROG`)\n",
			sizeName(size), median(tOn), median(tOff), median(tOn)-median(tOff), median(tAgain), *firsts)
	}
}

// sideBySide alternates timed batches on the two programs and prints the
// median cost per exec of each, in wall time and in CPU time of the
// shells and the programs they ran (less exposed to other load than the
// wall time, and blind to time spent waiting for the controller). It
// returns the CPU time this process spent during the batches on the
// watched program, less that during the others: the controller's CPU
// cost (the shells are children, counted apart).
func sideBySide(name, on, off string, execs, batch int) time.Duration {
	runBatch(on, batch) // warm up: page cache, decision cache
	runBatch(off, batch)
	var tOn, tOff, uOn, uOff []time.Duration
	var cpuOn, cpuOff time.Duration
	var ratios []float64 // of each pair of neighbouring batches: robust to the load drifting
	for i := 0; i < execs/batch; i++ {
		var dOn, dOff, ucOn, ucOff time.Duration
		c0 := cpu()
		if i%2 == 0 {
			dOn, ucOn = runBatch(on, batch)
			c1 := cpu()
			dOff, ucOff = runBatch(off, batch)
			cpuOn, cpuOff = cpuOn+c1-c0, cpuOff+cpu()-c1
		} else {
			dOff, ucOff = runBatch(off, batch)
			c1 := cpu()
			dOn, ucOn = runBatch(on, batch)
			cpuOff, cpuOn = cpuOff+c1-c0, cpuOn+cpu()-c1
		}
		n := time.Duration(batch)
		tOn, tOff = append(tOn, dOn/n), append(tOff, dOff/n)
		uOn, uOff = append(uOn, ucOn/n), append(uOff, ucOff/n)
		ratios = append(ratios, float64(dOn)/float64(dOff))
	}
	mOn, mOff := median(tOn), median(tOff)
	slices.Sort(ratios)
	fmt.Printf("%s: %d execs each side in batches of %d: median per exec on %v, off %v, ratio %.3f; median ratio of paired batches %.3f; CPU per exec on %v, off %v, ratio %.3f\n",
		name, execs, batch, mOn, mOff, float64(mOn)/float64(mOff), ratios[len(ratios)/2],
		median(uOn), median(uOff), float64(median(uOn))/float64(median(uOff)))
	alternate(on, off, execs)
	return max(cpuOn-cpuOff, 0)
}

// alternate measures the same two programs one exec at a time, on and
// off in turn (the order swapped every pair), from a child process of its
// own: no batch, so load that drifts over milliseconds touches both sides
// alike. The child is not this process, whose own children the controller
// lets run unasked.
func alternate(on, off string, execs int) {
	out, err := exec.Command("/proc/self/exe", "-drive", on+","+off, "-execs", fmt.Sprint(execs)).CombinedOutput()
	if err != nil {
		log.Fatalf("drive: %v %s", err, out)
	}
	fmt.Print(string(out))
}

// driveExecs runs on and off execs times each, alternately, and prints the
// median wall time per exec of each, their ratio, and the median of the
// ratios of neighbouring pairs.
func driveExecs(on, off string, execs int) {
	one := func(p string) time.Duration {
		start := time.Now()
		if err := exec.Command(p).Run(); err != nil {
			log.Fatalf("%s: %v", p, err)
		}
		return time.Since(start)
	}
	for range 20 { // warm up
		one(on)
		one(off)
	}
	tOn, tOff, ratios := make([]time.Duration, 0, execs), make([]time.Duration, 0, execs), make([]float64, 0, execs)
	for i := range execs {
		var a, b time.Duration
		if i%2 == 0 {
			a = one(on)
			b = one(off)
		} else {
			b = one(off)
			a = one(on)
		}
		tOn, tOff, ratios = append(tOn, a), append(tOff, b), append(ratios, float64(a)/float64(b))
	}
	slices.Sort(ratios)
	fmt.Printf("  one exec at a time, alternating, %d each: median per exec on %v, off %v, ratio %.3f; median ratio of neighbouring pairs %.3f\n",
		execs, median(tOn), median(tOff), float64(median(tOn))/float64(median(tOff)), ratios[len(ratios)/2])
}

// cpu is the user and system time of this process so far.
func cpu() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runBatch runs prog n times from one shell and returns the time taken
// and the CPU time (user and system) of the shell and its children.
func runBatch(prog string, n int) (time.Duration, time.Duration) {
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do %s || exit 1; i=$((i+1)); done", n, prog)
	cmd := exec.Command("/bin/sh", "-c", script)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		log.Fatalf("%s: %v %s", prog, err, out)
	}
	return time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

func timeOne(prog string) time.Duration {
	start := time.Now()
	if out, err := exec.Command("/bin/sh", "-c", prog).CombinedOutput(); err != nil {
		log.Fatalf("%s: %v %s", prog, err, out)
	}
	return time.Since(start)
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// apply makes the next generation: the settings marking mnt and 20
// ApplicationControl deny policies that match nothing here; sha, when set,
// adds one filtering on that sha256, so that every new file is hashed.
func apply(st *state.Store, gen int64, mnt, sha string) {
	docs := []string{`{"kind": "Settings", "id": "agent", "spec": {"applicationControl": {"mounts": ["` + mnt + `"]}}}`}
	for i := range 20 {
		docs = append(docs, fmt.Sprintf(`{"kind": "Policy", "id": "p%d", "spec": {"name": "p%d", "type": "ApplicationControl",
			"status": "enforce", "priority": %d, "controls": ["deny"], "filters": {"users": ["user-%d", "ops-*"],
			"applications": [{"path": "/opt/vendor-%d/bin/*"}, {"path": "%s/never-%d"}]}}}`, i, i, i, i, i, mnt, i))
	}
	if sha != "" {
		docs = append(docs, `{"kind": "Policy", "id": "by-hash", "spec": {"name": "by-hash", "type": "ApplicationControl",
			"status": "enforce", "controls": ["deny"], "filters": {"applications": [{"sha256": "`+sha+`"}]}}}`)
	}
	var ds []*schema.Document
	for i, d := range docs {
		doc, err := schema.Validate(fmt.Sprintf("d%d.json", i), []byte(d))
		if err != nil {
			log.Fatal(err)
		}
		ds = append(ds, doc)
	}
	if _, err := st.ApplyGeneration(state.Apply{BundleVersion: gen, Source: "bench", Docs: ds}); err != nil {
		log.Fatal(err)
	}
}

func waitActive(c *appcontrol.Controller) {
	for range 500 {
		if c.Status()["active"] == true {
			time.Sleep(50 * time.Millisecond) // let the generation settle
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	log.Fatal("controller not active")
}

func mount(dir, name string) string {
	p := filepath.Join(dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		log.Fatal(err)
	}
	if err := unix.Mount("wdn-appctl-bench", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=64m,mode=0755"); err != nil {
		log.Fatal(err)
	}
	return p
}

func copyFile(src, dst string, pad int64) {
	data, err := os.ReadFile(src)
	if err != nil {
		log.Fatal(err)
	}
	if pad > 0 {
		data = append(data, make([]byte, pad)...)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		log.Fatal(err)
	}
}

func sizeName(pad int64) string {
	if pad == 0 {
		return "35 KiB (/usr/bin/true)"
	}
	return fmt.Sprintf("%d MiB", pad>>20)
}

func loadavg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpus() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) != nil {
		return 0
	}
	return set.Count()
}

func kernel() string {
	var u unix.Utsname
	unix.Uname(&u)
	return unix.ByteSliceToString(u.Release[:])
}

func hostCPU() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if name, ok := strings.CutPrefix(l, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return "unknown CPU"
}
