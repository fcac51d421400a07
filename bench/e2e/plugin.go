package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// benchPlugin: the heartbeat plugin runs under the agent; the benchmark
// subscribes to its heartbeats as admin over MQTT, waits until the plugin
// has run long enough to count as healthy (reconcile.StableRun, 10 s),
// kills it with SIGKILL and times until a heartbeat from the replacement
// arrives: the new process was validated, started, got its certificate,
// connected to the broker over TLS and published.
func benchPlugin() {
	exe, err := os.MkdirTemp("", "warden-e2e-plugin-")
	check(err)
	defer os.RemoveAll(exe)
	bin := filepath.Join(exe, "heartbeat")
	run("go", "build", "-o", bin, "./fixtures/plugins/heartbeat")
	data, err := os.ReadFile(bin)
	check(err)
	sum := sha256.Sum256(data)
	a := startAgent(func(root string) {
		dir := filepath.Join(root, "Plugins", "heartbeat")
		check(os.MkdirAll(dir, 0o750))
		check(os.Chmod(filepath.Join(root, "Plugins"), 0o750))
		check(os.WriteFile(filepath.Join(dir, "heartbeat"), data, 0o750))
	})
	defer a.stop()
	docs, err := os.MkdirTemp("", "warden-e2e-docs-")
	check(err)
	writeDocs(docs, 0, 0, 1)
	check(os.MkdirAll(filepath.Join(docs, "plugins"), 0o755))
	check(os.WriteFile(filepath.Join(docs, "plugins", "heartbeat.json"), fmt.Appendf(nil, `{"kind": "Plugin", "id": "heartbeat",
  "spec": {"executable": "Plugins/heartbeat/heartbeat", "args": ["--interval", "1s"], "sha256": %q, "autostart": true,
  "restart": {"policy": "always"}}}`, hex.EncodeToString(sum[:])), 0o644))

	beats := make(chan beat, 64)
	c := a.subscribe("plugins/heartbeat/heartbeat", func(b beat) { beats <- b })
	defer c.Disconnect(&paho.Disconnect{})
	a.applyOne(a.build(docs, 1), 1, 1)
	os.RemoveAll(docs)

	cur := <-beats
	started := time.Now()
	var took []time.Duration
	for r := 0; r < *runs; r++ {
		// Healthy first: the restart after a healthy run is immediate.
		for time.Since(started) < 10*time.Second+500*time.Millisecond {
			select {
			case cur = <-beats:
			case <-time.After(time.Second):
			}
		}
		t0 := time.Now()
		check(syscall.Kill(cur.PID, syscall.SIGKILL))
		for {
			b := <-beats
			if b.PID != cur.PID {
				took = append(took, time.Since(t0))
				cur, started = b, time.Now()
				break
			}
		}
		fmt.Printf("  kill %d: replacement connected and beating after %s\n", r+1, took[len(took)-1].Round(100*time.Microsecond))
	}
	fmt.Printf("plugin SIGKILL to replacement connected to the broker (first heartbeat): %s\n", summarize(took))
}

type beat struct {
	PID int `json:"pid"`
}

// subscribe calls f for every heartbeat on topic.
func (a *agentProc) subscribe(topic string, f func(beat)) *paho.Client {
	return a.subscribeRaw(topic, func(payload []byte) {
		var b beat
		if json.Unmarshal(payload, &b) == nil && b.PID > 0 {
			f(b)
		}
	})
}

// subscribeRaw connects to the agent's broker with the admin certificate
// and calls f (one call at a time) for every message on topic.
func (a *agentProc) subscribeRaw(topic string, f func([]byte)) *paho.Client {
	var info struct{ MQTT string }
	data, err := os.ReadFile(filepath.Join(a.Root, "run", "agent.json"))
	check(err)
	check(json.Unmarshal(data, &info))
	cfg, err := a.AdminTLS()
	check(err)
	raw, err := tls.Dial("tcp", info.MQTT, cfg)
	check(err)
	var mu sync.Mutex
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(raw),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(p paho.PublishReceived) (bool, error) {
			mu.Lock()
			f(p.Packet.Payload)
			mu.Unlock()
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.Connect(ctx, &paho.Connect{KeepAlive: 60, CleanStart: true})
	check(err)
	_, err = c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 0}}})
	check(err)
	return c
}
