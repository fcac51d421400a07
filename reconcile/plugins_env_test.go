package reconcile

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/sys/unix"

	"warden/broker"
	"warden/pki"
	"warden/schema"
)

// The plugin tests run the real test plugin (fixtures/plugins/heartbeat)
// against a real broker, CA, store and audit writer.

var (
	heartbeatOnce sync.Once
	heartbeatBin  string
	heartbeatErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if heartbeatBin != "" {
		os.RemoveAll(filepath.Dir(heartbeatBin))
	}
	os.Exit(code)
}

// heartbeatBinary builds fixtures/plugins/heartbeat once per test binary.
func heartbeatBinary(t testing.TB) string {
	t.Helper()
	heartbeatOnce.Do(func() {
		dir, err := os.MkdirTemp("", "warden-heartbeat-")
		if err != nil {
			heartbeatErr = err
			return
		}
		heartbeatBin = filepath.Join(dir, "heartbeat")
		out, err := exec.Command("go", "build", "-o", heartbeatBin, "warden/fixtures/plugins/heartbeat").CombinedOutput()
		if err != nil {
			heartbeatErr = fmt.Errorf("go build heartbeat: %v\n%s", err, out)
		}
	})
	if heartbeatErr != nil {
		t.Fatal(heartbeatErr)
	}
	return heartbeatBin
}

// pluginEnv is an env with a CA, a broker and the plugins controller.
type pluginEnv struct {
	*env
	ca     *pki.CA
	broker *broker.Broker
	mqtt   string
	p      *Plugins

	mu     sync.Mutex
	issued map[string][]issuedCert // by plugin id, oldest first
}

type issuedCert struct{ certPEM, keyPEM string }

func newPluginEnv(t testing.TB) *pluginEnv {
	t.Helper()
	e := &pluginEnv{env: newEnv(t, nil), issued: map[string][]issuedCert{}}
	var err error
	e.ca, err = pki.Open(e.path("certs"), time.Now)
	must(t, err)
	server := pki.NewServerCert(e.ca, pki.ServerCertConfig{})
	_, err = server.Rotate()
	must(t, err)
	e.broker, err = broker.New(broker.Options{Addr: "127.0.0.1:0", CA: e.ca, Server: server, Audit: e.aw,
		Logger: e.m.opts.Logger, SweepInterval: -1})
	must(t, err)
	e.mqtt, err = e.broker.Start()
	must(t, err)
	t.Cleanup(func() { e.broker.Close() })
	must(t, os.MkdirAll(e.path("Plugins"), 0o750))
	return e
}

// run adds the controller and starts the manager and the supervisor; the
// cleanup stops the supervisor first, as the agent does.
func (e *pluginEnv) run(tune func(*PluginOptions)) {
	e.t.Helper()
	opts := PluginOptions{CA: e.ca, Broker: e.broker, MQTTAddr: e.mqtt, APIAddr: "127.0.0.1:1", StopGrace: 500 * time.Millisecond}
	if tune != nil {
		tune(&opts)
	}
	var err error
	e.p, err = e.m.AddPlugins(opts)
	must(e.t, err)
	e.p.onIssue = func(id, certPEM, keyPEM string) {
		e.mu.Lock()
		e.issued[id] = append(e.issued[id], issuedCert{certPEM, keyPEM})
		e.mu.Unlock()
	}
	must(e.t, e.broker.OnHeartbeat(e.p.Heartbeat))
	e.start()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.p.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

// install copies the heartbeat program to Plugins/<id>/heartbeat and
// returns its SHA-256.
func (e *pluginEnv) install(id string) string {
	e.t.Helper()
	data, err := os.ReadFile(heartbeatBinary(e.t))
	must(e.t, err)
	return e.installBytes(id, "heartbeat", data, 0o750)
}

// installBytes writes Plugins/<id>/<name> through a rename (a running
// executable cannot be written in place) and returns its SHA-256.
func (e *pluginEnv) installBytes(id, name string, data []byte, mode os.FileMode) string {
	e.t.Helper()
	dir := e.path("Plugins/" + id)
	must(e.t, os.MkdirAll(dir, 0o750))
	tmp := filepath.Join(dir, ".new-"+name)
	must(e.t, os.WriteFile(tmp, data, mode))
	must(e.t, os.Chmod(tmp, mode))
	must(e.t, os.Rename(tmp, filepath.Join(dir, name)))
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// pluginDoc is a validated Plugin document running Plugins/<id>/<exe>.
func pluginDoc(t testing.TB, id, exe, sha, extra string, args ...string) *schema.Document {
	t.Helper()
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = fmt.Sprintf("%q", a)
	}
	if extra != "" {
		extra = ", " + extra
	}
	raw := fmt.Sprintf(`{"kind": "Plugin", "id": %q, "spec": {"executable": "Plugins/%s/%s", "args": [%s], "sha256": %q, "autostart": true%s}}`,
		id, id, exe, strings.Join(q, ", "), sha, extra)
	return validated(t, []byte(raw))[0]
}

// status returns plugin id's status.
func (e *pluginEnv) status(id string) PluginStatus {
	for _, s := range e.p.List() {
		if s.ID == id {
			return s
		}
	}
	return PluginStatus{ID: id, State: "unknown"}
}

// running waits until plugin id runs with a pid other than not, and
// returns it.
func (e *pluginEnv) running(id string, not int) PluginStatus {
	e.t.Helper()
	var s PluginStatus
	e.waitFor(id+" running", func() bool {
		s = e.status(id)
		return s.State == "running" && s.PID != 0 && s.PID != not
	})
	return s
}

// beating waits until plugin id's current instance has sent a heartbeat
// that reached the supervisor through the broker.
func (e *pluginEnv) beating(id string) PluginStatus {
	e.t.Helper()
	var s PluginStatus
	e.waitFor(id+" heartbeat", func() bool {
		s = e.status(id)
		return s.State == "running" && !s.LastHeartbeat.IsZero()
	})
	return s
}

func (e *pluginEnv) certs(id string) []issuedCert {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]issuedCert(nil), e.issued[id]...)
}

func alive(pid int) bool { return unix.Kill(pid, 0) == nil }

// connectAs dials the broker with a plugin's certificate and returns the
// CONNECT's error and reason code.
func (e *pluginEnv) connectAs(id string, c issuedCert) (byte, error) {
	e.t.Helper()
	cfg, err := pki.ClientTLSConfigPEM(e.ca.CertPEM(), []byte(c.certPEM), []byte(c.keyPEM))
	must(e.t, err)
	raw, err := tls.Dial("tcp", e.mqtt, cfg)
	if err != nil {
		return 0, err // a refused handshake is a refusal too
	}
	defer raw.Close()
	cl := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(raw)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := cl.Connect(ctx, &paho.Connect{ClientID: "plugin/" + id + "/probe", KeepAlive: 30, CleanStart: true})
	if err == nil {
		cl.Disconnect(&paho.Disconnect{})
		return ack.ReasonCode, nil
	}
	if ack != nil {
		return ack.ReasonCode, err
	}
	return 0, err
}
