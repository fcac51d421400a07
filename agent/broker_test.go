package agent

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"warden/pki"
)

// TestBrokerCarriesAuditAndNotifications checks the wiring end to end: an
// admin MQTT client on the agent's broker receives stored audit events on
// AuditMessage and a monitor-notify decision on Notifications.
func TestBrokerCarriesAuditAndNotifications(t *testing.T) {
	root := t.TempDir()
	_, info := startAgent(t, root)
	cfg, err := pki.ClientTLSConfig(filepath.Join(root, "certs"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tls.Dial("tcp", info.MQTT, cfg)
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan *paho.Publish, 100)
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(raw),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(r paho.PublishReceived) (bool, error) {
			msgs <- r.Packet
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: "admin/cli/test", KeepAlive: 30, CleanStart: true}); err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if _, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "AuditMessage", QoS: 1}, {Topic: "Notifications", QoS: 1}}}); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	admin := adminClient(t, root)
	doc := `{"kind": "Policy", "id": "watch-curl", "spec": {"name": "Watch curl", "type": "PrivilegeElevation",
	 "status": "monitor-notify", "controls": ["deny"], "filters": {"applications": [{"path": "/usr/bin/curl"}]}}}`
	if code, body := do(t, admin, "PUT", "https://"+info.API+"/api/v1/desired/Policy/watch-curl", doc); code != 200 {
		t.Fatalf("PUT = %d %s", code, body)
	}
	// The engine recompiles on the new generation; ask until it decides.
	var answer string
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(answer, `"policy":"watch-curl"`) && time.Now().Before(deadline) {
		_, answer = do(t, admin, "POST", "https://"+info.API+"/api/v1/evaluate",
			`{"user": "ivan", "machine": "ws-1", "action": "elevate", "application": {"path": "/usr/bin/curl"}}`)
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(answer, `"effective":"allow"`) || !strings.Contains(answer, `"decision":"deny"`) {
		t.Fatalf("monitor-notify answer %s; want decision deny, effective allow", answer)
	}
	var sawAudit, sawNotify bool
	timeout := time.After(5 * time.Second)
	for !(sawAudit && sawNotify) {
		select {
		case m := <-msgs:
			switch m.Topic {
			case "AuditMessage":
				sawAudit = sawAudit || strings.Contains(string(m.Payload), `"POLICY_EVALUATION"`)
			case "Notifications":
				sawNotify = strings.Contains(string(m.Payload), `"watch-curl"`)
			}
		case <-timeout:
			t.Fatalf("AuditMessage with POLICY_EVALUATION: %v, Notifications for watch-curl: %v", sawAudit, sawNotify)
		}
	}
}
