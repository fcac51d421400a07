package audit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden/audit"
)

// writeBurst stores n events (each with pad bytes of details) from 32
// goroutines at once, as a busy agent would (they share fsyncs), and
// fails the test if any write fails.
func writeBurst(t *testing.T, w *audit.Writer, n, pad int) {
	t.Helper()
	const writers = 32
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	padding := strings.Repeat("x", pad)
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += writers {
				_, err := w.Write(context.Background(), audit.Event{Type: audit.PolicyEvaluation, Component: "test",
					UserInfo: &audit.UserInfo{User: "alice"}, Details: map[string]any{"i": i, "note": `quote " ] \ =|`, "pad": padding}})
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestForwardSyslogTLSSurvivesReceiverKill sends a burst of 10,000 events
// to a real rsyslog over TLS, kills rsyslog (SIGKILL) in the middle of it
// and starts it again: every sequence number arrives, every hash verifies
// and the chain is whole; the only repeats are around the reconnect.
func TestForwardSyslogTLSSurvivesReceiverKill(t *testing.T) {
	rs := newRsyslog(t)
	rs.start()
	st := openStore(t, t.TempDir())
	w, err := audit.NewWriter(st, audit.Options{Machine: "ws-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	applySettings(t, st, fmt.Sprintf(`[{"type": "syslog", "address": %q, "caFile": %q}]`,
		rs.addr(), filepath.Join(rs.dir, "ca.pem")))
	f, _ := startForwarder(t, st, w)

	const n = 10000
	t0 := time.Now()
	burst := make(chan struct{})
	go func() {
		defer close(burst)
		writeBurst(t, w, n, 0)
	}()
	waitFor(t, 30*time.Second, "rsyslog to receive a first part of the burst", func() bool {
		return rs.lines() >= 1000
	})
	t.Logf("%s: killing rsyslog", time.Since(t0).Round(time.Millisecond))
	rs.kill()
	before, _ := rs.received()
	time.Sleep(300 * time.Millisecond)
	rs.start()
	<-burst
	t.Logf("%s: burst stored", time.Since(t0).Round(time.Millisecond))
	last := lastSeq(t, st)
	if last < n {
		t.Fatalf("only %d events stored", last)
	}
	waitFor(t, 60*time.Second, "every event to reach rsyslog", func() bool {
		if rs.lines() < int(last) {
			return false // cheap check first: parsing 10,000 lines is not
		}
		got, _ := rs.received()
		return uint64(len(got)) >= last
	})
	t.Logf("%s: all received", time.Since(t0).Round(time.Millisecond))
	got, dups := rs.received()
	checkChain(t, got, last)
	t.Logf("%d events; %d had arrived when rsyslog was killed; %d repeated after the reconnect", last, len(before), dups)
	if dups > n/2 {
		t.Errorf("%d repeats: more than the events in flight around one reconnect", dups)
	}
	waitFor(t, 10*time.Second, "the cursor to reach the last event", func() bool {
		s := f.Status()
		return len(s) == 1 && s[0].Cursor == last && s[0].Lag == 0 && s[0].Connected
	})
}

// TestForwardFileRotatesAndResumes forwards to an NDJSON file with a small
// rotation size, stops the forwarder (an agent restart), stores more,
// starts again: every event is in the files exactly once, in order, and the
// cursor beside the file names the last one.
func TestForwardFileRotatesAndResumes(t *testing.T) {
	st := openStore(t, t.TempDir())
	w, err := audit.NewWriter(st, audit.Options{Machine: "ws-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	out := filepath.Join(t.TempDir(), "log", "audit.ndjson")
	applySettings(t, st, fmt.Sprintf(`[{"type": "file", "path": %q, "maxSizeMB": 1, "maxFiles": 4}]`, out))

	writeBurst(t, w, 2000, 600)
	reg := prometheus.NewRegistry()
	f := audit.NewForwarder(st, w, nil, reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.Run(ctx) }()
	waitFor(t, 20*time.Second, "the file to hold the first 2000 events", func() bool {
		s := f.Status()
		return len(s) == 1 && s[0].Cursor == lastSeq(t, st)
	})
	if got := gauge(t, reg, "warden_audit_forward_lag_events"); got != 0 {
		t.Errorf("warden_audit_forward_lag_events = %v, want 0", got)
	}
	cancel()
	<-done

	writeBurst(t, w, 1500, 600) // stored while no forwarder runs
	_, stop := startForwarder(t, st, w)
	last := lastSeq(t, st)
	waitFor(t, 20*time.Second, "the cursor beside the file to name the last event", func() bool {
		data, _ := os.ReadFile(out + ".cursor")
		var c struct{ Seq uint64 }
		json.Unmarshal(data, &c)
		return c.Seq == last
	})
	stop()

	got := map[uint64][]byte{}
	var order []uint64
	for _, name := range []string{out + ".3", out + ".2", out + ".1", out} { // oldest first
		fh, err := os.Open(name)
		if err != nil {
			t.Fatalf("rotation: %v", err)
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e audit.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s: line is not an event: %v", name, err)
			}
			if _, dup := got[e.Seq]; dup {
				t.Fatalf("seq %d written twice", e.Seq)
			}
			got[e.Seq] = append([]byte(nil), sc.Bytes()...)
			order = append(order, e.Seq)
		}
		fh.Close()
		if st, _ := os.Stat(name); st.Mode().Perm() != 0o640 {
			t.Errorf("%s mode %v, want 0640", name, st.Mode().Perm())
		}
	}
	if _, err := os.Stat(out + ".4"); err == nil {
		t.Errorf("%s.4 exists: 3.4 MB in 1 MB files rotate three times", out)
	}
	checkChain(t, got, last)
	for i := 1; i < len(order); i++ {
		if order[i] != order[i-1]+1 {
			t.Fatalf("out of order: %d after %d", order[i], order[i-1])
		}
	}
}

// TestForwardNeverBlocksAndAlerts points syslog at a receiver that accepts
// and never reads (the network buffer fills): writes go on at full speed
// and the lag shows the backlog. Then at an address where nothing
// listens: past alertAfterSeconds an AUDIT_FORWARD_FAILED event is stored,
// and when a receiver comes up, AUDIT_FORWARD_RESTORED and the backlog.
func TestForwardNeverBlocksAndAlerts(t *testing.T) {
	st := openStore(t, t.TempDir())
	w, err := audit.NewWriter(st, audit.Options{Machine: "ws-1"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	stall, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stall.Close()
	var conns []net.Conn
	var connsMu sync.Mutex
	go func() {
		for {
			c, err := stall.Accept()
			if err != nil {
				return
			}
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
		}
	}()
	defer func() {
		connsMu.Lock()
		for _, c := range conns {
			c.Close()
		}
		connsMu.Unlock()
	}()
	applySettings(t, st, fmt.Sprintf(`[{"type": "syslog", "address": %q, "tls": false}]`, stall.Addr()))
	f, stop := startForwarder(t, st, w)
	start := time.Now()
	writeBurst(t, w, 20000, 0) // ~8 MB of messages: more than socket buffers hold
	t.Logf("20000 events stored in %s with a stalled receiver", time.Since(start).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "the lag to show the backlog", func() bool {
		s := f.Status()
		return len(s) == 1 && s[0].Lag > 0 && s[0].Cursor < lastSeq(t, st)
	})
	stop()

	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	applySettings(t, st, fmt.Sprintf(`[{"type": "syslog", "address": %q, "tls": false, "alertAfterSeconds": 1}]`, addr))
	failedCh, cancelFailed := w.Subscribe(audit.AuditForwardFailed)
	defer cancelFailed()
	restoredCh, cancelRestored := w.Subscribe(audit.AuditForwardRestored)
	defer cancelRestored()
	f, _ = startForwarder(t, st, w)
	failed := waitEvent(t, failedCh, audit.AuditForwardFailed, 20*time.Second)
	if failed.TargetInfo == nil || failed.TargetInfo.ID != "syslog:"+addr || failed.Severity != audit.Warning {
		t.Errorf("AUDIT_FORWARD_FAILED = %+v", failed)
	}
	if s := f.Status(); len(s) != 1 || !s[0].Alerted || s[0].DownSince == nil || s[0].LastError == "" {
		t.Errorf("status while down = %+v", s)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var lines int
	var linesMu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					var size int
					if _, err := fmt.Fscanf(r, "%d ", &size); err != nil {
						return
					}
					msg := make([]byte, size)
					if _, err := io.ReadFull(r, msg); err != nil {
						return
					}
					if !strings.HasPrefix(string(msg), "<") {
						return
					}
					linesMu.Lock()
					lines++
					linesMu.Unlock()
				}
			}()
		}
	}()
	waitEvent(t, restoredCh, audit.AuditForwardRestored, 40*time.Second)
	waitFor(t, 60*time.Second, "the backlog to drain", func() bool {
		s := f.Status()
		return len(s) == 1 && s[0].Connected && s[0].Lag == 0
	})
	linesMu.Lock()
	defer linesMu.Unlock()
	if uint64(lines) < lastSeq(t, st)-1 {
		t.Errorf("receiver framed %d messages, want about %d", lines, lastSeq(t, st))
	}
}

// waitEvent waits for an event from ch (a subscription to one type).
func waitEvent(t *testing.T, ch <-chan audit.Event, typ string, d time.Duration) audit.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(d):
		t.Fatalf("no %s event after %s", typ, d)
	}
	return audit.Event{}
}

// gauge reads the single value of a gauge from reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered with one value", name)
	return 0
}
