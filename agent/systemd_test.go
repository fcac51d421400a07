package agent

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotifyAndWatchdog runs an agent the way a Type=notify unit
// with WatchdogSec= does (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID) and
// reads what it tells systemd: READY=1 once it serves, WATCHDOG=1 pings
// while the store and controllers answer, STOPPING=1 on stop.
func TestSystemdNotifyAndWatchdog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan Info, 1)
	go func() {
		done <- Run(ctx, Options{Root: t.TempDir(), ListenAPI: "127.0.0.1:0", ListenHealth: "127.0.0.1:0",
			ListenMQTT: "127.0.0.1:0", LogOutput: io.Discard, Ready: func(i Info) { ready <- i }})
	}()
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	want := func(msg string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case m := <-msgs:
				if m == msg {
					return
				}
			case err := <-done:
				t.Fatalf("agent ended (%v) before sending %s", err, msg)
			case <-deadline:
				t.Fatalf("no %s from the agent", msg)
			}
		}
	}
	want("READY=1")
	<-ready
	want("WATCHDOG=1")
	want("WATCHDOG=1")
	cancel()
	want("STOPPING=1")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestJournalPriorities(t *testing.T) {
	var buf bytes.Buffer
	a := &agent{opts: Options{Journal: true, LogOutput: &buf, Root: t.TempDir()}, level: nil}
	a.level = new(levelVar)
	if err := a.openLogs(); err != nil {
		t.Fatal(err)
	}
	log := a.log.With("component", "test")
	log.Info("started")
	log.Warn("careful")
	log.Error("broken")
	log.Debug("hidden") // below the Info level
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	wantPrefix := []string{"<6>{", "<4>{", "<3>{"}
	if len(lines) != len(wantPrefix) {
		t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(wantPrefix), buf.String())
	}
	for i, p := range wantPrefix {
		if !strings.HasPrefix(lines[i], p) || !strings.Contains(lines[i], `"component":"test"`) {
			t.Errorf("line %d = %q; want prefix %q and the component attribute", i, lines[i], p)
		}
	}
	if a.logFile != nil {
		t.Error("under the journal the agent must not write a log file")
	}
	if _, err := os.Stat(filepath.Join(a.opts.Root, "logs", "agent.log")); err == nil {
		t.Error("logs/agent.log written under the journal")
	}
}

func TestUnderJournal(t *testing.T) {
	var st syscallStat
	if err := fstat(int(os.Stderr.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", strconv.FormatUint(st.Dev, 10)+":"+strconv.FormatUint(st.Ino, 10))
	if !UnderJournal() {
		t.Error("stderr matching JOURNAL_STREAM: UnderJournal() = false")
	}
	t.Setenv("JOURNAL_STREAM", "1:2")
	if UnderJournal() {
		t.Error("stderr not the journal's stream (redirected): UnderJournal() = true")
	}
}

func TestDailyLogKeepsDaysAndPrunes(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 11, 1, 23, 59, 0, 0, time.UTC)
	f, err := openLog(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.now = func() time.Time { return now }
	f.day = now.Format(time.DateOnly)
	for day := 0; day < 20; day++ {
		if _, err := f.Write([]byte("line\n")); err != nil {
			t.Fatal(err)
		}
		now = now.Add(24 * time.Hour)
	}
	rotated, _ := filepath.Glob(filepath.Join(dir, "agent-*.log"))
	if len(rotated) != 19 {
		t.Fatalf("after 20 days: %d rotated files; want 19 (one per past day)", len(rotated))
	}
	// Give each rotated file its day as mtime, then prune with 15 days:
	// the files last written within the 15 days before now stay.
	cutoff := now.Add(-15 * 24 * time.Hour)
	keep := 0
	for _, r := range rotated {
		day, _ := time.Parse(time.DateOnly, strings.TrimSuffix(strings.TrimPrefix(filepath.Base(r), "agent-"), ".log"))
		os.Chtimes(r, day, day.Add(23*time.Hour))
		if !day.Add(23 * time.Hour).Before(cutoff) {
			keep++
		}
	}
	n, err := pruneLogs(dir, cutoff)
	if err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "agent-*.log"))
	if n != 19-keep || len(left) != keep || keep < 12 {
		t.Fatalf("pruned %d, %d left; want %d pruned and %d kept", n, len(left), 19-keep, keep)
	}
	if _, err := os.Stat(filepath.Join(dir, "agent.log")); err != nil {
		t.Fatal("the current log must stay:", err)
	}
}

type (
	levelVar    = slog.LevelVar
	syscallStat = syscall.Stat_t
)

var fstat = syscall.Fstat

// TestWatchdogAliveNeedsTheControllerRuntime: alive (what gates every
// watchdog ping) answers while the store and the controller loop do, and
// refuses once the controller runtime has stopped.
func TestWatchdogAliveNeedsTheControllerRuntime(t *testing.T) {
	a, _ := startAgent(t, t.TempDir())
	if err := a.alive(context.Background(), 2*time.Second); err != nil {
		t.Fatalf("alive on a running agent: %v", err)
	}
	a.cancel() // ends the background components, the controller runtime among them
	a.bg.Wait()
	if err := a.alive(context.Background(), 200*time.Millisecond); err == nil {
		t.Fatal("alive with the controller runtime stopped: nil; the watchdog would keep pinging")
	}
}
