package broker

import (
	"strings"

	"warden/pki"
)

// Topics the agent alone publishes.
const (
	TopicAudit         = "AuditMessage"
	TopicNotifications = "Notifications"
)

// PluginPrefix is the root of every plugin's own topics: plugin ID owns
// PluginPrefix + ID + "/#".
const PluginPrefix = "plugins/"

// HeartbeatTopic is where plugin id publishes its heartbeat.
func HeartbeatTopic(id string) string { return PluginPrefix + id + "/heartbeat" }

// grants is what one connected identity may do, fixed at CONNECT.
type grants struct {
	id        pki.Identity
	readAll   bool     // admin
	read      []string // topic filters the identity may subscribe to
	pubPrefix string   // topics it may publish start with this (empty: none)
}

func grantsFor(id pki.Identity, topics func(string) []string) *grants {
	g := &grants{id: id}
	switch id.Role {
	case pki.RoleAdmin:
		g.readAll = true
	case pki.RolePlugin:
		own := PluginPrefix + id.Name
		g.pubPrefix = own
		g.read = []string{own + "/#"}
		if topics != nil {
			for _, f := range topics(id.Name) {
				if validFilter(f) {
					g.read = append(g.read, f)
				}
			}
		}
	}
	return g
}

// canPublish says whether the identity may publish to topic (a topic name,
// no wildcards): plugin NAME to plugins/NAME and below, nobody else.
func (g *grants) canPublish(topic string) bool {
	if g.pubPrefix == "" {
		return false
	}
	return topic == g.pubPrefix || strings.HasPrefix(topic, g.pubPrefix+"/")
}

// canRead says whether the identity may subscribe to filter, or receive a
// message on a topic name (a filter without wildcards): some granted filter
// must match every topic the requested one matches. A shared subscription
// ($share/GROUP/FILTER) is judged by its FILTER.
func (g *grants) canRead(filter string) bool {
	if g.readAll {
		return true
	}
	filter = unshare(filter)
	for _, allowed := range g.read {
		if covers(allowed, filter) {
			return true
		}
	}
	return false
}

func unshare(filter string) string {
	if !strings.HasPrefix(filter, "$share/") {
		return filter
	}
	rest := strings.TrimPrefix(filter, "$share/")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[i+1:]
	}
	return filter // malformed; mochi refuses it anyway, and it covers nothing
}

// covers reports whether every topic matched by filter sub is matched by
// filter allowed (MQTT 4.7 matching: + is one level, # the rest including
// the parent level, $-topics are never matched by a leading wildcard).
func covers(allowed, sub string) bool {
	if allowed == "" || sub == "" {
		return false
	}
	if strings.HasPrefix(sub, "$") && !strings.HasPrefix(allowed, "$") {
		return false
	}
	a := strings.Split(allowed, "/")
	s := strings.Split(sub, "/")
	for i, al := range a {
		if al == "#" {
			return true
		}
		if i >= len(s) {
			return false
		}
		sl := s[i]
		switch {
		case sl == "#":
			return false // sub reaches deeper than one level here, allowed does not
		case al == "+":
			// covers a literal level or a +
		case al != sl:
			return false
		}
	}
	return len(s) == len(a) // sub deeper than allowed is not covered
}

// validFilter reports whether f is a well-formed topic filter.
func validFilter(f string) bool {
	if f == "" {
		return false
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return false
		}
		if strings.Contains(l, "+") && l != "+" {
			return false
		}
	}
	return true
}
