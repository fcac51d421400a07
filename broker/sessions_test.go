package broker_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"warden/audit"
	"warden/pki"
)

const codeQuotaExceeded = 0x97

// One plugin cannot hold the broker's sessions: past a few per identity it
// is refused (and audited), while other plugins and the admin still get in.
// A closed session gives its place back.
func TestSessionsLimitedPerIdentity(t *testing.T) {
	e := newEnv(t, envOptions{})
	hb := e.issue(pki.RolePlugin, "heartbeat")
	var held []*client
	for i := 0; ; i++ {
		c, err := e.connect(e.tlsConfig(hb), fmt.Sprintf("plugin/heartbeat/%d", i), nil)
		if err == nil {
			held = append(held, c)
			if i > 64 {
				t.Fatalf("plugin/heartbeat holds %d sessions; want a small limit per identity", len(held))
			}
			continue
		}
		if c.connack == nil || c.connack.ReasonCode != codeQuotaExceeded {
			t.Fatalf("session %d: %v, connack %+v; want quota exceeded", i, err, c.connack)
		}
		break
	}
	if len(held) < 2 {
		t.Fatalf("plugin/heartbeat got %d sessions; a plugin needs a few (reconnects)", len(held))
	}
	evs, _, _ := audit.Query(e.store, audit.Filter{Types: []string{audit.AuthorizationFailed}})
	if len(evs) == 0 {
		t.Fatal("the refused session was not audited")
	}
	e.mustConnect(e.issue(pki.RolePlugin, "other"), "plugin/other")
	e.mustConnect(e.issue(pki.RoleAdmin, "operator"), "admin/operator")

	// Closing one session frees its place.
	held[0].Disconnect(&paho.Disconnect{})
	deadline := time.Now().Add(waitLimit)
	for {
		_, err := e.connect(e.tlsConfig(hb), "plugin/heartbeat/again", nil)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session after one was closed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
