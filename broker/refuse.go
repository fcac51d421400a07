package broker

import (
	"context"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"

	"warden/audit"
)

// refusal describes one refused connection or request, for the audit log.
type refusal struct {
	typ      string // audit.ProcessAuthenticationFailed or audit.AuthorizationFailed
	identity string // ROLE/NAME once authenticated
	reason   string
	key      string // rate-limiting key, with typ and the peer's executable
	clientID string
	action   string // publish, subscribe, will
	topic    string
}

// refuse audits r with the peer's address and, best effort, its process,
// capped and coalesced (audit.Coalescer, shared with the API): the first
// refusal of a kind is written at once, repeats within the window become
// one event with their count. The lookup only ever adds detail; it never
// lets anyone in.
func (b *Broker) refuse(c *conn, r refusal) {
	ui := &audit.UserInfo{Identity: r.identity, PeerAddr: c.RemoteAddr().String()}
	key := r.typ + "|" + r.key
	lookup := func(e *audit.Event) {
		if local, remote, found := c.addrs(); found {
			if pid, exe, found := b.opts.Peer(local, remote); found {
				e.UserInfo.PeerPID, e.UserInfo.PeerExe = pid, exe
			}
		}
	}
	if r.identity == "" {
		// Unauthenticated: tell processes apart by what they run.
		probe := audit.Event{UserInfo: ui}
		lookup(&probe)
		key += "|" + ui.PeerExe
		lookup = nil
	}
	details := map[string]any{"reason": r.reason}
	if r.clientID != "" {
		details["clientId"] = r.clientID
	}
	if r.action != "" {
		details["action"] = r.action
	}
	var target *audit.TargetInfo
	if r.topic != "" {
		target = &audit.TargetInfo{Kind: "topic", Path: r.topic}
	}
	ev := audit.Event{Type: r.typ, Severity: audit.Warning, Component: "broker",
		UserInfo: ui, TargetInfo: target, Details: details}
	written := true
	if b.opts.Refusals != nil {
		written = b.opts.Refusals.Record(key, ev, lookup)
	}
	b.log.Log(context.Background(), logLevel(written), "refused", "type", r.typ, "identity", r.identity,
		"client", r.clientID, "action", r.action, "topic", r.topic, "peer", ui.PeerAddr,
		"pid", ui.PeerPID, "exe", ui.PeerExe, "reason", r.reason)
}

func logLevel(audited bool) slog.Level {
	if audited {
		return slog.LevelWarn
	}
	return slog.LevelDebug
}

// refuseTopic audits a refused publish or subscribe, at most once per
// window for the same client id, action and topic.
func (b *Broker) refuseTopic(cl *mqtt.Client, s *session, action, topic string) {
	c, ok := cl.Net.Conn.(*conn)
	if !ok {
		return
	}
	who := s.grants.id.Role + "/" + s.grants.id.Name
	b.refuse(c, refusal{typ: audit.AuthorizationFailed, identity: who,
		reason: who + " may not " + action + " " + topic, key: cl.ID + "|" + action + "|" + topic,
		clientID: cl.ID, action: action, topic: topic})
}
