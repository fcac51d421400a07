package broker_test

import (
	"testing"
	"time"

	"warden/broker"
	"warden/pki"
)

type beat struct{ id, serial string }

// OnHeartbeat reports a plugin's own heartbeats with the serial it
// connected with, and nothing else: not its other topics, not a publish
// the ACL refused.
func TestOnHeartbeat(t *testing.T) {
	e := newEnv(t, envOptions{})
	beats := make(chan beat, 16)
	if err := e.broker.OnHeartbeat(func(id, serial string) { beats <- beat{id, serial} }); err != nil {
		t.Fatal(err)
	}
	hbID := e.issue(pki.RolePlugin, "heartbeat")
	hb := e.mustConnect(hbID, "plugin/heartbeat")
	other := e.mustConnect(e.issue(pki.RolePlugin, "other"), "plugin/other")

	hb.publish(t, "plugins/heartbeat/status", 1, []byte("x"))                              // not a heartbeat
	if code := other.publish(t, broker.HeartbeatTopic("heartbeat"), 1, nil); code < 0x80 { // refused by the ACL
		t.Fatalf("foreign heartbeat accepted: %#x", code)
	}
	for _, qos := range []byte{0, 1} {
		hb.publish(t, broker.HeartbeatTopic("heartbeat"), qos, []byte("{}"))
		select {
		case b := <-beats:
			if b != (beat{"heartbeat", hbID.serial}) {
				t.Fatalf("got %+v, want heartbeat/%s", b, hbID.serial)
			}
		case <-time.After(waitLimit):
			t.Fatal("no heartbeat reported")
		}
	}
	select {
	case b := <-beats:
		t.Fatalf("unexpected report %+v", b)
	default:
	}
}
