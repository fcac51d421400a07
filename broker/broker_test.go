package broker_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"warden/audit"
	"warden/broker"
	"warden/pki"
)

// MQTT v5 reason codes the tests expect.
const (
	codeNotAuthorized   = 0x87
	codeClientIDInvalid = 0x85
)

func TestPluginPublishesAndReceives(t *testing.T) {
	e := newEnv(t, envOptions{topics: map[string][]string{"heartbeat": {broker.TopicAudit}}})
	hb := e.mustConnect(e.issue(pki.RolePlugin, "heartbeat"), "plugin/heartbeat")
	if got := hb.subscribe(t, "plugins/heartbeat/#", broker.TopicAudit); !bytes.Equal(got, []byte{1, 1}) {
		t.Fatalf("suback = %x, want 0101", got)
	}
	for _, qos := range []byte{0, 1} {
		if code := hb.publish(t, broker.HeartbeatTopic("heartbeat"), qos, []byte{qos}); code != 0 {
			t.Fatalf("publish qos %d: reason %#x", qos, code)
		}
		if m := hb.receive(t, broker.HeartbeatTopic("heartbeat")); !bytes.Equal(m.Payload, []byte{qos}) {
			t.Fatalf("received %x, want %x", m.Payload, qos)
		}
	}

	// Every stored audit event reaches AuditMessage, as stored.
	stored, err := e.audit.Write(context.Background(), audit.Event{Type: audit.AdminAction, Component: "test"})
	if err != nil {
		t.Fatal(err)
	}
	m := hb.receive(t, broker.TopicAudit)
	if m.QoS != 1 || !bytes.Equal(m.Payload, stored.Raw) {
		t.Fatalf("AuditMessage qos %d payload %s, want qos 1 and %s", m.QoS, m.Payload, stored.Raw)
	}
	var ev audit.Event
	if err := json.Unmarshal(m.Payload, &ev); err != nil || ev.ID != stored.ID || ev.Hash != stored.Hash {
		t.Fatalf("AuditMessage decodes to %+v, %v; want id %s", ev, err, stored.ID)
	}
}

func TestAdminReadsEverythingAndNotifications(t *testing.T) {
	e := newEnv(t, envOptions{})
	admin := e.mustConnect(e.issue(pki.RoleAdmin, pki.AdminName), "admin/cli/watch")
	if got := admin.subscribe(t, "#"); !bytes.Equal(got, []byte{1}) {
		t.Fatalf("admin suback = %x, want 01", got)
	}
	hb := e.mustConnect(e.issue(pki.RolePlugin, "heartbeat"), "plugin/heartbeat")
	hb.publish(t, broker.HeartbeatTopic("heartbeat"), 1, []byte("beat"))
	if m := admin.receive(t, broker.HeartbeatTopic("heartbeat")); string(m.Payload) != "beat" {
		t.Fatalf("admin got %q", m.Payload)
	}
	if err := e.broker.Notify([]byte(`{"policy":"p"}`)); err != nil {
		t.Fatal(err)
	}
	if m := admin.receive(t, broker.TopicNotifications); string(m.Payload) != `{"policy":"p"}` || m.QoS != 1 {
		t.Fatalf("Notifications: qos %d %q", m.QoS, m.Payload)
	}
}

func TestConnectRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	// The foreign CA shares the broker CA's frozen clock: on its own clock its
	// certificate could start a second after that frozen instant and be
	// refused as not yet valid instead of as foreign.
	foreign, err := pki.Open(filepath.Join(t.TempDir(), "certs"), e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	fc, fk, _, err := foreign.Issue(pki.RolePlugin, "heartbeat", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	revoked := e.issue(pki.RolePlugin, "heartbeat")
	if err := e.ca.Revoke(revoked.serial); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		id   identity
		want error
	}{
		{"no certificate", identity{}, pki.ErrNoCertificate},
		{"foreign CA", identity{certPEM: fc, keyPEM: fk}, pki.ErrUnknownCA},
		{"revoked", revoked, pki.ErrRevoked},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			events := e.events(audit.ProcessAuthenticationFailed)
			cfg := e.tlsConfig(tc.id)
			if tc.id.certPEM != nil {
				pair, err := tls.X509KeyPair(tc.id.certPEM, tc.id.keyPEM)
				if err != nil {
					t.Fatal(err)
				}
				cfg.Certificates = []tls.Certificate{pair}
			}
			c, err := e.connect(cfg, "plugin/heartbeat", nil)
			if err == nil || c.connack == nil || c.connack.ReasonCode != codeNotAuthorized {
				t.Fatalf("connect: %v, connack %+v; want refused with %#x", err, c.connack, codeNotAuthorized)
			}
			checkRefusal(t, next(t, events), c.localTCP, tc.want.Error())
		})
	}
}

// checkRefusal checks the audit record names the peer and its process.
func checkRefusal(t *testing.T, ev audit.Event, peerAddr, reason string) {
	t.Helper()
	if ev.Component != "broker" || ev.UserInfo == nil || ev.UserInfo.PeerAddr != peerAddr {
		t.Fatalf("event %+v user_info %+v; want component broker, peer %s", ev, ev.UserInfo, peerAddr)
	}
	if ev.UserInfo.PeerPID != os.Getpid() {
		t.Errorf("peer pid %d, want this test (%d)", ev.UserInfo.PeerPID, os.Getpid())
	}
	if got, _ := ev.Details["reason"].(string); !strings.Contains(got, reason) {
		t.Errorf("reason %q, want it to mention %q", got, reason)
	}
}

func TestExpiredCertificateRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.issue(pki.RolePlugin, "heartbeat")
	e.clock.Advance(2 * time.Hour)
	events := e.events(audit.ProcessAuthenticationFailed)
	c, err := e.connect(e.tlsConfig(id), "plugin/heartbeat", nil)
	if err == nil || c.connack.ReasonCode != codeNotAuthorized {
		t.Fatalf("connect with expired certificate: %v", err)
	}
	checkRefusal(t, next(t, events), c.localTCP, pki.ErrExpired.Error())
}

func TestHandshakeFailureAudited(t *testing.T) {
	e := newEnv(t, envOptions{})
	events := e.events(audit.ProcessAuthenticationFailed)
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Plain MQTT where TLS is expected: a CONNECT packet header.
	if _, err := raw.Write([]byte{0x10, 0x10, 0, 4, 'M', 'Q', 'T', 'T', 5, 2, 0, 30, 0}); err != nil {
		t.Fatal(err)
	}
	checkRefusal(t, next(t, events), raw.LocalAddr().String(), "TLS handshake failed")
}

func TestClientIDBoundToIdentity(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.issue(pki.RolePlugin, "heartbeat")
	cases := []struct {
		clientID string
		ok       bool
	}{
		{"plugin/heartbeat", true},
		{"plugin/heartbeat/second", true},
		{"plugin/heartbeat2", false},
		{"plugin/other", false},
		{"heartbeat", false},
		{"admin/cli", false},
		{"inline", false}, // mochi's own client
		{"plugin/heartbeat/", false},
	}
	for _, tc := range cases {
		t.Run(tc.clientID, func(t *testing.T) {
			events := e.events(audit.AuthorizationFailed)
			c, err := e.connect(e.tlsConfig(id), tc.clientID, nil)
			if tc.ok {
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				c.Disconnect(&paho.Disconnect{})
				return
			}
			if err == nil || c.connack.ReasonCode != codeClientIDInvalid {
				t.Fatalf("connect: %v; want refused with %#x", err, codeClientIDInvalid)
			}
			checkRefusal(t, next(t, events), c.localTCP, "client id")
		})
	}
	t.Run("empty gets one assigned", func(t *testing.T) {
		c := e.mustConnect(id, "")
		if got := c.connack.Properties.AssignedClientID; !strings.HasPrefix(got, "plugin/heartbeat/") {
			t.Fatalf("assigned client id %q", got)
		}
	})
}

func TestWillBoundToIdentity(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.issue(pki.RolePlugin, "heartbeat")
	events := e.events(audit.AuthorizationFailed)
	c, err := e.connect(e.tlsConfig(id), "plugin/heartbeat", func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: broker.TopicAudit, Payload: []byte(`{"type":"forged"}`)}
	})
	if err == nil || c.connack.ReasonCode != codeNotAuthorized {
		t.Fatalf("connect with a will on AuditMessage: %v", err)
	}
	checkRefusal(t, next(t, events), c.localTCP, "will")

	_, err = e.connect(e.tlsConfig(id), "plugin/heartbeat", func(cp *paho.Connect) {
		cp.WillMessage = &paho.WillMessage{Topic: "plugins/heartbeat/status", Payload: []byte("gone")}
	})
	if err != nil {
		t.Fatalf("connect with a will on its own topic: %v", err)
	}
}

func TestACLRefusalsAudited(t *testing.T) {
	e := newEnv(t, envOptions{topics: map[string][]string{"heartbeat": {"plugins/+/heartbeat"}}})
	hb := e.mustConnect(e.issue(pki.RolePlugin, "heartbeat"), "plugin/heartbeat")
	admin := e.mustConnect(e.issue(pki.RoleAdmin, pki.AdminName), "admin/cli")
	events := e.events(audit.AuthorizationFailed)

	publishes := []struct {
		c     *client
		who   string
		topic string
	}{
		{hb, "plugin/heartbeat", broker.TopicAudit},
		{hb, "plugin/heartbeat", broker.TopicNotifications},
		{hb, "plugin/heartbeat", "plugins/other/heartbeat"},
		{hb, "plugin/heartbeat", "plugins/heartbeat2/x"},
		{admin, "admin/cli", broker.TopicAudit},
		{admin, "admin/cli", "plugins/heartbeat/heartbeat"},
	}
	for _, p := range publishes {
		if code := p.c.publish(t, p.topic, 1, []byte("x")); code != codeNotAuthorized {
			t.Errorf("%s publish %s: reason %#x, want %#x", p.who, p.topic, code, codeNotAuthorized)
		}
		checkTopicRefusal(t, next(t, events), p.who, "publish", p.topic)
	}

	subs := []string{"#", broker.TopicAudit, broker.TopicNotifications, "plugins/other/#", "plugins/+/status", "$SYS/#"}
	reasons := hb.subscribe(t, subs...)
	for i, f := range subs {
		if reasons[i] != codeNotAuthorized {
			t.Errorf("subscribe %s: reason %#x, want %#x", f, reasons[i], codeNotAuthorized)
		}
		checkTopicRefusal(t, next(t, events), "plugin/heartbeat", "subscribe", f)
	}
	// Listed in its document: allowed, and it receives others' heartbeats.
	if got := hb.subscribe(t, "plugins/+/heartbeat", "plugins/other/heartbeat"); !bytes.Equal(got, []byte{1, 1}) {
		t.Fatalf("suback = %x, want 0101", got)
	}
}

func checkTopicRefusal(t *testing.T, ev audit.Event, who, action, topic string) {
	t.Helper()
	if ev.UserInfo == nil || ev.UserInfo.Identity != who || ev.TargetInfo == nil || ev.TargetInfo.Path != topic ||
		ev.Details["action"] != action {
		t.Fatalf("event user %+v target %+v details %v; want %s %s %s", ev.UserInfo, ev.TargetInfo, ev.Details, who, action, topic)
	}
}

func TestRepeatedRefusalAuditedOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	hb := e.mustConnect(e.issue(pki.RolePlugin, "heartbeat"), "plugin/heartbeat")
	events := e.events(audit.AuthorizationFailed)
	for range 50 {
		hb.publish(t, broker.TopicAudit, 1, []byte("flood"))
	}
	// A different topic marks the end: one client's packets are handled,
	// and audited, in order.
	hb.publish(t, "plugins/other/x", 1, nil)
	checkTopicRefusal(t, next(t, events), "plugin/heartbeat", "publish", broker.TopicAudit)
	checkTopicRefusal(t, next(t, events), "plugin/heartbeat", "publish", "plugins/other/x")
}

func TestRevokedWhileConnected(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.issue(pki.RolePlugin, "heartbeat")
	c := e.mustConnect(id, "plugin/heartbeat")
	other := e.mustConnect(e.issue(pki.RolePlugin, "other"), "plugin/other")

	if err := e.ca.Revoke(id.serial); err != nil {
		t.Fatal(err)
	}
	if n := e.broker.DisconnectSerial(id.serial); n != 1 {
		t.Fatalf("DisconnectSerial = %d, want 1", n)
	}
	waitGone(t, c, codeNotAuthorized)
	if code := other.publish(t, "plugins/other/x", 1, nil); code != 0 {
		t.Fatalf("the other plugin was affected: %#x", code)
	}
	if _, err := e.connect(e.tlsConfig(id), "plugin/heartbeat", nil); err == nil {
		t.Fatal("revoked certificate connected again")
	}
}

func TestSweepDisconnectsRevokedAndExpired(t *testing.T) {
	e := newEnv(t, envOptions{})
	id := e.issue(pki.RolePlugin, "heartbeat")
	c := e.mustConnect(id, "plugin/heartbeat")
	if n := e.broker.Sweep(); n != 0 {
		t.Fatalf("Sweep with nothing revoked = %d", n)
	}
	events := e.events(audit.ProcessAuthenticationFailed)
	if err := e.ca.Revoke(id.serial); err != nil {
		t.Fatal(err)
	}
	if n := e.broker.Sweep(); n != 1 {
		t.Fatalf("Sweep = %d, want 1", n)
	}
	waitGone(t, c, codeNotAuthorized)
	if ev := next(t, events); ev.UserInfo.Identity != "plugin/heartbeat" {
		t.Fatalf("sweep audited %+v", ev.UserInfo)
	}

	c2 := e.mustConnect(e.issue(pki.RolePlugin, "heartbeat"), "plugin/heartbeat")
	e.clock.Advance(2 * time.Hour)
	if n := e.broker.Sweep(); n != 1 {
		t.Fatalf("Sweep after expiry = %d, want 1", n)
	}
	waitGone(t, c2, codeNotAuthorized)
}

func waitGone(t *testing.T, c *client, code byte) {
	t.Helper()
	select {
	case d := <-c.gone:
		if d.ReasonCode != code {
			t.Errorf("DISCONNECT reason %#x, want %#x", d.ReasonCode, code)
		}
	case <-time.After(waitLimit):
		t.Fatal("client still connected")
	}
	select {
	case <-c.Done():
	case <-time.After(waitLimit):
		t.Fatal("connection still open")
	}
}

func TestNewRefusesAddresses(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8675", "[::1]:8675", "localhost:8675", "192.168.1.10:8675", "127.0.0.2:8675", "127.0.0.1", ":8675"} {
		_, err := broker.New(broker.Options{Addr: addr, CA: &pki.CA{}, Server: &pki.ServerCert{}, Audit: &audit.Writer{}})
		if !errors.Is(err, broker.ErrAddress) {
			t.Errorf("New(%q) = %v, want ErrAddress", addr, err)
		}
	}
}

func TestCloseEndsEveryConnection(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.mustConnect(e.issue(pki.RolePlugin, "heartbeat"), "plugin/heartbeat")
	// A connection that never completes its handshake.
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	closed := make(chan struct{})
	go func() { e.broker.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("Close did not return")
	}
	waitGone(t, c, 0x8b) // server shutting down
	raw.SetReadDeadline(time.Now().Add(waitLimit))
	if _, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatal("half-open connection still open")
	}
	if err := e.broker.Notify(nil); !errors.Is(err, broker.ErrClosed) {
		t.Fatalf("Notify after Close = %v, want ErrClosed", err)
	}
}

func TestStartCloseLeavesNoGoroutines(t *testing.T) {
	e := newEnv(t, envOptions{}) // store, writer, CA, and one broker we ignore
	id := e.issue(pki.RolePlugin, "heartbeat")
	base := runtime.NumGoroutine()
	for range 3 {
		b, err := broker.New(broker.Options{Addr: "127.0.0.1:0", CA: e.ca, Server: e.server, Audit: e.audit, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		addr, err := b.Start()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Start(); !errors.Is(err, broker.ErrStarted) {
			t.Fatalf("second Start = %v, want ErrStarted", err)
		}
		other := *e
		other.addr = addr
		c := other.mustConnect(id, "plugin/heartbeat")
		raw, err := net.Dial("tcp", addr) // and one that never says anything
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
		b.Close()
		waitGone(t, c, 0x8b)
		raw.Close()
	}
	// Goroutines end asynchronously after their connection closes: poll.
	deadline := time.Now().Add(waitLimit)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Close returns even when mochi's own Close never does (mochi-mqtt
// v2.7.9 can deadlock in it when a client leaves while it lists the
// listener's clients): after the grace period and cutting every
// connection, it waits one more grace period and gives up.
func TestCloseReturnsWhenServerCloseHangs(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.mustConnect(e.issue(pki.RolePlugin, "heartbeat"), "plugin/heartbeat")
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	broker.SetStopServer(e.broker, func() { <-release })
	closed := make(chan struct{})
	start := time.Now()
	go func() { e.broker.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatal("Close did not return while the server's Close hung")
	}
	if took := time.Since(start); took < 2*time.Second {
		t.Errorf("Close returned after %v, before cutting connections and waiting", took)
	}
	select { // cut, without a DISCONNECT
	case <-c.Done():
	case <-time.After(waitLimit):
		t.Fatal("connection still open after Close")
	}
}
