package state

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// crashEnv, when set to a directory, makes TestCrashChild the child
// process of TestCrashSafety: it applies generations there until killed.
const crashEnv = "WARDEN_STATE_CRASH_DIR"

// docsFor is how many documents generation g holds, different from one
// generation to the next so that a mix of two would show in the count.
func docsFor(g uint64) int { return 200 + int(g%7)*60 }

// TestCrashChild is not a test of its own: TestCrashSafety runs the test
// binary again with crashEnv set, and this applies generations in a loop,
// each one's documents tagged with its generation number, until SIGKILL.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("child process of TestCrashSafety")
	}
	s, err := Open(dir, Options{KeepGenerations: 3})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	fmt.Println("ready")
	for {
		g := s.Current().Meta.Generation + 1 // the only writer
		if _, err := s.ApplyGeneration(Apply{BundleVersion: int64(g), Source: "crash", Docs: generationDocs(t, docsFor(g), fmt.Sprint(g))}); err != nil {
			fmt.Println("apply:", err)
			os.Exit(4)
		}
	}
}

// TestCrashSafety kills a process applying generations with SIGKILL at
// random moments, 60 times, and checks after each kill that the store
// opens and holds exactly one whole generation: the documents of one
// generation, as many as its meta says, none of another.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("in the child")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	dir := keeperDir(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const kills = 60
	var last uint64
	advanced := 0
	for i := 0; i < kills; i++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		if line != "ready\n" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("kill %d: child said %q", i, line)
		}
		// A random moment: anywhere in the first few applies, including
		// mid-write and mid-fsync.
		time.Sleep(time.Duration(rng.IntN(120_000)) * time.Microsecond)
		cmd.Process.Signal(syscall.SIGKILL)
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("kill %d: child ended with %v, not by SIGKILL", i, err)
		}
		g := checkWhole(t, dir, i)
		if g < last {
			t.Fatalf("kill %d: generation went back from %d to %d", i, last, g)
		}
		if g > last {
			advanced++
		}
		last = g
	}
	t.Logf("%d kills, %d of them after progress, last generation %d", kills, advanced, last)
	if last == 0 {
		t.Fatal("the child never committed a generation: the kills tested nothing")
	}
}

// checkWhole opens the store in dir and checks that its current
// generation, and every kept one, is whole. It returns the current
// generation.
func checkWhole(t *testing.T, dir string, i int) uint64 {
	t.Helper()
	s, err := Open(dir, Options{KeepGenerations: 3})
	if err != nil {
		t.Fatalf("kill %d: store does not open: %v", i, err)
	}
	defer s.Close()
	cur := s.Current()
	g := cur.Meta.Generation
	if g == 0 {
		if len(cur.Docs) != 0 {
			t.Fatalf("kill %d: generation 0 holds %d documents", i, len(cur.Docs))
		}
		return 0
	}
	gens, err := s.Generations()
	if err != nil {
		t.Fatalf("kill %d: Generations: %v", i, err)
	}
	if len(gens) == 0 || gens[0].Generation != g {
		t.Fatalf("kill %d: current is %d but kept generations are %+v", i, g, gens)
	}
	for _, m := range gens {
		sn, err := s.Generation(m.Generation)
		if err != nil {
			t.Fatalf("kill %d: generation %d: %v", i, m.Generation, err)
		}
		if m.Documents != docsFor(m.Generation) || len(sn.Docs) != m.Documents || int64(m.Generation) != m.BundleVersion {
			t.Fatalf("kill %d: generation %d holds %d documents, meta says %d, want %d",
				i, m.Generation, len(sn.Docs), m.Documents, docsFor(m.Generation))
		}
		for _, d := range sn.Docs {
			if tagOf(d) != fmt.Sprint(m.Generation) {
				t.Fatalf("kill %d: generation %d holds %s from generation %s", i, m.Generation, d.ID, tagOf(d))
			}
		}
	}
	return g
}
