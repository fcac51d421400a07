package agent

import (
	"fmt"

	"warden/broker"
	"warden/schema"
)

// startBroker starts the MQTT broker on loopback with TLS and puts every
// stored audit event on AuditMessage. It returns the bound address.
func (a *agent) startBroker() (string, error) {
	b, err := broker.New(broker.Options{Addr: a.opts.ListenMQTT, CA: a.ca, Server: a.server, Audit: a.audit, Refusals: a.refusals,
		Logger: a.log, Topics: a.pluginTopics, Peer: lookupPeer})
	if err != nil {
		return "", fmt.Errorf("broker: %w", err)
	}
	addr, err := b.Start()
	if err != nil {
		return "", fmt.Errorf("broker: %w", err)
	}
	a.broker = b
	// A subscription, not a Publisher: it catches up from the store by
	// sequence number, so a burst never drops an event from AuditMessage.
	events, cancel := a.audit.Subscribe()
	a.cancelAuditFeed = cancel
	b.Follow(events)
	a.notifier = func(p []byte) {
		if err := b.Notify(p); err != nil {
			a.log.Warn("notification not published", "err", err)
		}
	}
	return addr, nil
}

// pluginTopics is what a plugin's document lets it subscribe to.
func (a *agent) pluginTopics(id string) []string {
	d := a.store.Current().Get(schema.KindPlugin, id)
	if d == nil {
		return nil
	}
	return d.Plugin().Topics.Subscribe
}
