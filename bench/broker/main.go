// Command broker measures the MQTT broker's throughput: N plugin clients
// publish M messages each over TLS on loopback while one subscriber reads
// them all, at QoS 0 and QoS 1. It runs the same client against warden's
// broker (started in a child process, like mosquitto, so the client never
// shares a Go runtime with the broker) and, when installed, against
// mosquitto configured with the same certificates, and prints a table with
// the warden/mosquitto ratio.
//
//	go run ./bench/broker [--clients 10] [--messages 20000] [--size 64] [--runs 3] [--window 16]
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"warden/audit"
	"warden/broker"
	"warden/pki"
	"warden/state"
)

type params struct {
	clients, messages, size, runs, window int
	qos                                   []byte
}

func main() {
	serve := flag.String("serve-warden", "", "internal: serve warden's broker with the CA in this folder")
	p := params{qos: []byte{0, 1}}
	flag.IntVar(&p.clients, "clients", 10, "publishing plugin clients")
	flag.IntVar(&p.messages, "messages", 20000, "messages per client per run")
	flag.IntVar(&p.size, "size", 64, "payload bytes")
	flag.IntVar(&p.runs, "runs", 3, "runs per broker and QoS (the median is reported)")
	flag.IntVar(&p.window, "window", 16, "QoS 1 publishes in flight per client")
	mosq := flag.String("mosquitto", "mosquitto", "mosquitto executable (empty: skip)")
	flag.Parse()
	if *serve != "" {
		if err := serveWarden(*serve); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := bench(p, *mosq); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// serveWarden runs warden's broker until stdin closes, printing its address.
func serveWarden(dir string) error {
	st, err := state.Open(filepath.Join(dir, "KeeperStorage"), state.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	w, err := audit.NewWriter(st, audit.Options{})
	if err != nil {
		return err
	}
	defer w.Close()
	ca, err := pki.Open(filepath.Join(dir, "certs"), time.Now)
	if err != nil {
		return err
	}
	server := pki.NewServerCert(ca, pki.ServerCertConfig{})
	if _, err := server.Rotate(); err != nil {
		return err
	}
	b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", CA: ca, Server: server, Audit: w,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	w.AddPublisher(b)
	addr, err := b.Start()
	if err != nil {
		return err
	}
	defer b.Close()
	fmt.Println(addr)
	signal.Ignore(os.Interrupt)
	io.Copy(io.Discard, os.Stdin)
	return nil
}

// target is a running broker to measure.
type target struct {
	name string
	addr string
	stop func()
}

func bench(p params, mosquittoExe string) error {
	dir, err := os.MkdirTemp("", "bench-broker-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755) // mosquitto may drop to its own user
	ca, err := pki.Open(filepath.Join(dir, "certs"), time.Now)
	if err != nil {
		return err
	}
	ids, err := issueAll(ca, p.clients)
	if err != nil {
		return err
	}
	targets := []func() (*target, error){func() (*target, error) { return startWarden(dir) }}
	if mosquittoExe != "" {
		if exe, err := exec.LookPath(mosquittoExe); err == nil {
			targets = append(targets, func() (*target, error) { return startMosquitto(exe, dir, ca) })
		} else {
			fmt.Fprintf(os.Stderr, "mosquitto not found (%v): measuring warden only\n", err)
		}
	}
	fmt.Printf("%d clients x %d messages of %d bytes, TLS on loopback, median of %d runs; GOMAXPROCS %d, %d CPUs\n",
		p.clients, p.messages, p.size, p.runs, runtime.GOMAXPROCS(0), runtime.NumCPU())
	results := map[string]map[byte]result{}
	for _, start := range targets {
		t, err := start()
		if err != nil {
			return err
		}
		results[t.name] = map[byte]result{}
		for _, q := range p.qos {
			var rs []result
			for range p.runs {
				r, err := runOnce(t.addr, ca, ids, p, q)
				if err != nil {
					t.stop()
					return fmt.Errorf("%s qos %d: %w", t.name, q, err)
				}
				rs = append(rs, r)
			}
			results[t.name][q] = median(rs)
			fmt.Printf("%-10s qos %d  %s\n", t.name, q, results[t.name][q])
		}
		t.stop()
	}
	if m, ok := results["mosquitto"]; ok {
		for _, q := range p.qos {
			w := results["warden"][q]
			fmt.Printf("ratio warden/mosquitto qos %d: publish %.2f, delivered %.2f\n", q,
				w.pubRate/m[q].pubRate, w.subRate/m[q].subRate)
		}
	}
	return nil
}

type identity struct{ cert tls.Certificate }

// issueAll issues plugin certificates bench-0..n-1 and, last, the admin's.
func issueAll(ca *pki.CA, n int) ([]identity, error) {
	var out []identity
	for i := 0; i <= n; i++ {
		role, name := pki.RolePlugin, fmt.Sprintf("bench-%d", i)
		if i == n {
			role, name = pki.RoleAdmin, pki.AdminName
		}
		c, k, _, err := ca.Issue(role, name, 24*time.Hour)
		if err != nil {
			return nil, err
		}
		pair, err := tls.X509KeyPair(c, k)
		if err != nil {
			return nil, err
		}
		out = append(out, identity{pair})
	}
	return out, nil
}

func startWarden(dir string) (*target, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "--serve-warden", dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("warden broker: %w", err)
	}
	return &target{name: "warden", addr: strings.TrimSpace(addr), stop: func() {
		in.Close()
		cmd.Wait()
	}}, nil
}

func startMosquitto(exe, dir string, ca *pki.CA) (*target, error) {
	if _, err := ca.IssueServer(0); err != nil {
		return nil, err
	}
	certs := filepath.Join(dir, "mosquitto")
	if err := os.MkdirAll(certs, 0o755); err != nil {
		return nil, err
	}
	for _, f := range []string{"ca.pem", "server.pem", "server-key.pem"} {
		data, err := os.ReadFile(filepath.Join(ca.Dir(), f))
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(certs, f), data, 0o644); err != nil {
			return nil, err
		}
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(certs, "mosquitto.conf")
	// Defaults otherwise, as mochi's own comparison used them; the client
	// must present a certificate of the same CA, as with warden.
	err = os.WriteFile(conf, []byte(fmt.Sprintf(`listener %d 127.0.0.1
cafile %s/ca.pem
certfile %s/server.pem
keyfile %s/server-key.pem
require_certificate true
use_identity_as_username true
allow_anonymous false
log_dest stderr
log_type error
log_type warning
`, port, certs, certs, certs)), 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-c", conf)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i == 100 {
			cmd.Process.Kill()
			return nil, fmt.Errorf("mosquitto did not listen on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &target{name: "mosquitto", addr: addr, stop: func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

type result struct {
	sent, received int
	pubRate        float64 // messages/s accepted from the publishers (QoS 1: acknowledged)
	subRate        float64 // messages/s delivered to the subscriber
}

func (r result) String() string {
	return fmt.Sprintf("published %8.0f msg/s  delivered %8.0f msg/s  (%d/%d delivered)", r.pubRate, r.subRate, r.received, r.sent)
}

func median(rs []result) result {
	slices.SortFunc(rs, func(a, b result) int {
		switch {
		case a.subRate < b.subRate:
			return -1
		case a.subRate > b.subRate:
			return 1
		}
		return 0
	})
	return rs[len(rs)/2]
}

func dial(addr string, ca *pki.CA, id identity, clientID string, onMsg func()) (*paho.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: ca.Pool(), Certificates: []tls.Certificate{id.cert}}
	raw, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	conf := paho.ClientConfig{Conn: packets.NewThreadSafeConn(raw)}
	if onMsg != nil {
		conf.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(paho.PublishReceived) (bool, error) {
			onMsg()
			return true, nil
		}}
	}
	c := paho.NewClient(conf)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 60, CleanStart: true}); err != nil {
		return nil, err
	}
	return c, nil
}

func runOnce(addr string, ca *pki.CA, ids []identity, p params, qos byte) (result, error) {
	total := p.clients * p.messages
	var received atomic.Int64
	var last atomic.Int64 // unix nanos of the latest delivery
	all := make(chan struct{})
	sub, err := dial(addr, ca, ids[p.clients], "admin/cli/bench", func() {
		last.Store(time.Now().UnixNano())
		if received.Add(1) == int64(total) {
			close(all)
		}
	})
	if err != nil {
		return result{}, fmt.Errorf("subscriber: %w", err)
	}
	defer sub.Disconnect(&paho.Disconnect{})
	ctx := context.Background()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "plugins/+/bench", QoS: qos}}}); err != nil {
		return result{}, err
	}
	pubs := make([]*paho.Client, p.clients)
	for i := range pubs {
		if pubs[i], err = dial(addr, ca, ids[i], fmt.Sprintf("plugin/bench-%d", i), nil); err != nil {
			return result{}, fmt.Errorf("publisher %d: %w", i, err)
		}
		defer pubs[i].Disconnect(&paho.Disconnect{})
	}
	payload := make([]byte, p.size)
	start := time.Now()
	var wg sync.WaitGroup
	var pubErr atomic.Pointer[error]
	for i, c := range pubs {
		topic := fmt.Sprintf("plugins/bench-%d/bench", i)
		workers := 1
		if qos > 0 {
			workers = p.window
		}
		per := p.messages / workers
		for w := range workers {
			n := per
			if w == workers-1 {
				n = p.messages - per*(workers-1)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: payload})
					if err == nil && r.ReasonCode >= 0x80 {
						err = fmt.Errorf("publish refused: %#x", r.ReasonCode)
					}
					if err != nil {
						pubErr.CompareAndSwap(nil, &err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	pubElapsed := time.Since(start)
	if e := pubErr.Load(); e != nil {
		return result{}, *e
	}
	// Wait for every message, or until deliveries stop (QoS 0 may drop).
	for {
		before := received.Load()
		select {
		case <-all:
		case <-time.After(2 * time.Second):
			if received.Load() != before {
				continue
			}
		}
		break
	}
	n := received.Load()
	if n == 0 {
		return result{}, errors.New("nothing delivered")
	}
	subElapsed := time.Duration(last.Load() - start.UnixNano())
	return result{sent: total, received: int(n),
		pubRate: float64(total) / pubElapsed.Seconds(), subRate: float64(n) / subElapsed.Seconds()}, nil
}
