package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"warden/pki"
)

// OnHeartbeat calls fn for every publish the broker accepts on a plugin's
// own heartbeat topic (HeartbeatTopic(id)), with the plugin's id and the
// serial of the certificate it connected with, so the plugin supervisor
// can tell the instance it started from an older one. fn runs on the
// publishing client's goroutine and must not block. It may be called
// before or after Start; each call adds one more callback.
func (b *Broker) OnHeartbeat(fn func(pluginID, serial string)) error {
	return b.srv.AddHook(&heartbeatHook{fn: fn}, nil)
}

type heartbeatHook struct {
	mqtt.HookBase
	fn func(pluginID, serial string)
}

func (h *heartbeatHook) ID() string { return "warden-heartbeat" }

func (h *heartbeatHook) Provides(b byte) bool { return b == mqtt.OnPublished }

// OnPublished runs after the ACL allowed the publish. The identity comes
// from the connection, not the topic: only plugin NAME reaches here with
// plugins/NAME/heartbeat, and the check is repeated so that a change to
// the ACL can never turn one plugin's publish into another's heartbeat.
func (h *heartbeatHook) OnPublished(cl *mqtt.Client, pk packets.Packet) {
	s := sessionOf(cl)
	if s == nil || s.grants.id.Role != pki.RolePlugin || pk.TopicName != HeartbeatTopic(s.grants.id.Name) {
		return
	}
	h.fn(s.grants.id.Name, s.serial)
}
