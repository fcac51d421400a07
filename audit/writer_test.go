package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"warden/audit"
	"warden/state"
)

func openStore(t testing.TB, dir string) *state.Store {
	t.Helper()
	st, err := state.Open(dir, state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestWriteChainsAndVerifies(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	w, err := audit.NewWriter(st, audit.Options{Machine: "ws-1"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if _, err := w.Write(context.Background(), audit.Event{Type: audit.AdminAction, Component: "test",
					UserInfo: &audit.UserInfo{User: fmt.Sprintf("u%d", g)}}); err != nil {
					t.Error(err)
				}
			}
		}(g)
	}
	wg.Wait()
	w.Close()
	n, err := audit.Verify(st)
	if err != nil || n != 800 {
		t.Fatalf("Verify = %d, %v; want 800, nil", n, err)
	}
	// The chain continues across a restart of the writer.
	w2, err := audit.NewWriter(st, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e, err := w2.Write(context.Background(), audit.Event{Type: audit.AgentStarted})
	if err != nil || e.Seq != 801 {
		t.Fatalf("first event after restart: seq %d, %v; want 801", e.Seq, err)
	}
	w2.Close()
	if n, err := audit.Verify(st); err != nil || n != 801 {
		t.Fatalf("Verify after restart = %d, %v", n, err)
	}
	evs, next, err := audit.Query(st, audit.Filter{User: "u3", Limit: 20})
	if err != nil || len(evs) != 20 || next == "" {
		t.Fatalf("Query user u3: %d events, next %q, %v; want 20 and a cursor", len(evs), next, err)
	}
	after, _ := strconv.ParseUint(next, 10, 64)
	rest, next2, err := audit.Query(st, audit.Filter{User: "u3", After: after, Limit: 100})
	if err != nil || len(rest) != 30 || next2 != "" {
		t.Fatalf("second page: %d events, next %q, %v; want 30 and no cursor", len(rest), next2, err)
	}
	st.Close()
}

func TestVerifyFindsEditedDatabase(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	w, _ := audit.NewWriter(st, audit.Options{})
	var target uint64
	for i := 0; i < 200; i++ {
		e, err := w.Write(context.Background(), audit.Event{Type: audit.DriftDetected, Details: map[string]any{"marker": "EDIT-ME-PLEASE"}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 120 {
			target = e.Seq
		}
	}
	w.Close()
	st.Close()
	// Find event 121's stored (encrypted) value in the file and flip one
	// byte of it, as someone editing warden.db with a hex editor would.
	path := filepath.Join(dir, state.DBFile)
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sealed []byte
	db.View(func(tx *bolt.Tx) error {
		k := make([]byte, 8)
		binary.BigEndian.PutUint64(k, target)
		sealed = append([]byte(nil), tx.Bucket([]byte("audit")).Get(k)...)
		return nil
	})
	db.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	off := bytes.Index(data, sealed)
	if len(sealed) == 0 || off < 0 {
		t.Fatal("stored event not found in the file")
	}
	data[off+len(sealed)/2] ^= 0x5a
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, dir)
	defer st.Close()
	n, err := audit.Verify(st)
	var brk *audit.BreakError
	if !errors.As(err, &brk) || brk.Seq != target || n != int(target)-1 {
		t.Fatalf("Verify = %d, %v; want a break at event %d after %d good ones", n, err, target, target-1)
	}
}

func TestPruneKeepsChainVerifiable(t *testing.T) {
	st := openStore(t, t.TempDir())
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	w, _ := audit.NewWriter(st, audit.Options{Now: clock})
	for i := 0; i < 100; i++ {
		now = now.Add(time.Hour)
		if _, err := w.Write(context.Background(), audit.Event{Type: audit.AdminAction}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := audit.Prune(st, now.Add(-10*time.Hour))
	if err != nil || n != 89 {
		t.Fatalf("Prune = %d, %v; want 89 (hours 1..89)", n, err)
	}
	if n, err := audit.Verify(st); err != nil || n != 11 {
		t.Fatalf("Verify after prune = %d, %v; want 11, nil", n, err)
	}
	w.Close()
	// A new writer continues after the anchor when everything was pruned.
	if _, err := audit.Prune(st, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	w2, _ := audit.NewWriter(st, audit.Options{})
	if _, err := w2.Write(context.Background(), audit.Event{Type: audit.AdminAction}); err != nil {
		t.Fatal(err)
	}
	w2.Close()
	if n, err := audit.Verify(st); err != nil || n != 1 {
		t.Fatalf("Verify after full prune and a new event = %d, %v; want 1, nil", n, err)
	}
	st.Close()
}

// TestKillDuringWrites kills a child writing audit events from 50
// goroutines with SIGKILL; every event whose Write returned must be there
// after restart, and the chain must verify.
func TestKillDuringWrites(t *testing.T) {
	if dir := os.Getenv("WARDEN_AUDIT_CHILD"); dir != "" {
		childWriter(dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringWrites$")
		cmd.Env = append(os.Environ(), "WARDEN_AUDIT_CHILD="+dir)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		acked := map[uint64]string{}
		sc := bufio.NewScanner(out)
		for sc.Scan() && len(acked) < 2000+round*500 {
			var seq uint64
			var id string
			if _, err := fmt.Sscanf(sc.Text(), "%d %s", &seq, &id); err == nil {
				acked[seq] = id
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if len(acked) == 0 {
			t.Fatal("child acknowledged no events")
		}
		st := openStore(t, dir)
		if _, err := audit.Verify(st); err != nil {
			t.Fatalf("round %d: chain broken after kill: %v", round, err)
		}
		found := map[uint64]string{}
		st.AuditScan(0, false, func(a state.AuditEntry) bool {
			var e audit.Event
			json.Unmarshal(a.Data, &e)
			found[a.Seq] = e.ID
			return true
		})
		st.Close()
		for seq, id := range acked {
			if found[seq] != id {
				t.Fatalf("round %d: acknowledged event %d (%s) missing after kill", round, seq, id)
			}
		}
	}
}

func childWriter(dir string) {
	st, err := state.Open(dir, state.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	w, err := audit.NewWriter(st, audit.Options{})
	if err != nil {
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				e, err := w.Write(context.Background(), audit.Event{Type: audit.AdminAction, Component: "child"})
				if err != nil {
					os.Exit(4)
				}
				mu.Lock()
				fmt.Fprintf(out, "%d %s\n", e.Seq, e.ID)
				out.Flush()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
}

func TestWriteAfterCloseFails(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	w, _ := audit.NewWriter(st, audit.Options{})
	w.Close()
	// Many tries: a select between a free queue slot and the closed stop
	// channel would pick the queue half of the time.
	for i := 0; i < 50; i++ {
		done := make(chan error, 1)
		go func() { _, err := w.Write(context.Background(), audit.Event{Type: audit.AgentStopped}); done <- err }()
		select {
		case err := <-done:
			if !errors.Is(err, audit.ErrClosed) {
				t.Fatalf("Write after Close = %v; want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Write after Close hangs")
		}
	}
}

// Verify runs inside a live agent (GET /api/v1/audit/verify) while
// retention prunes: it reads the anchor and the events as one snapshot, so
// a prune between the two never looks like missing events.
func TestVerifyDuringPrunes(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	w, _ := audit.NewWriter(st, audit.Options{Now: func() time.Time { return now }})
	for range 400 {
		now = now.Add(time.Minute)
		if _, err := w.Write(context.Background(), audit.Event{Type: audit.AdminAction}); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	done := make(chan error)
	go func() {
		for i := 1; i <= 390; i++ {
			if _, err := audit.Prune(st, start.Add(time.Duration(i)*time.Minute+time.Second)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for pruning := true; pruning; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			pruning = false
		default:
		}
		if _, err := audit.Verify(st); err != nil {
			t.Fatalf("Verify while pruning: %v", err)
		}
	}
}
