package broker

import (
	"testing"

	"warden/pki"
)

func TestCovers(t *testing.T) {
	cases := []struct {
		allowed, sub string
		want         bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/b", "a/b/c", false},
		{"a/b/c", "a/b", false},
		{"a/+", "a/b", true},
		{"a/+", "a/+", true},
		{"a/+", "a/#", false}, // a/# also matches a and a/b/c
		{"a/+", "a/b/c", false},
		{"a/#", "a", true}, // # matches the parent level
		{"a/#", "a/b/c", true},
		{"a/#", "a/+/c", true},
		{"a/#", "a/#", true},
		{"a/#", "b", false},
		{"#", "anything/at/all", true},
		{"#", "$SYS/broker", false}, // leading wildcards never match $-topics
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/broker/uptime", true},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a/+/+", false},
		{"plugins/x/#", "plugins/x2/a", false},
		{"", "a", false},
		{"a", "", false},
	}
	for _, tc := range cases {
		if got := covers(tc.allowed, tc.sub); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.allowed, tc.sub, got, tc.want)
		}
	}
}

func TestGrants(t *testing.T) {
	topics := func(id string) []string {
		return map[string][]string{"hb": {"AuditMessage", "plugins/+/heartbeat", "bad/#/filter", ""}}[id]
	}
	plugin := grantsFor(pki.Identity{Role: pki.RolePlugin, Name: "hb"}, topics)
	admin := grantsFor(pki.Identity{Role: pki.RoleAdmin, Name: pki.AdminName}, topics)
	type check struct {
		g       *grants
		publish bool
		topic   string
		want    bool
	}
	cases := []check{
		{plugin, true, "plugins/hb/heartbeat", true},
		{plugin, true, "plugins/hb", true},
		{plugin, true, "plugins/hb2/heartbeat", false},
		{plugin, true, "plugins/other/heartbeat", false},
		{plugin, true, "AuditMessage", false},
		{plugin, true, "Notifications", false},
		{plugin, false, "plugins/hb/#", true},
		{plugin, false, "plugins/hb/cmd", true},
		{plugin, false, "AuditMessage", true},
		{plugin, false, "plugins/other/heartbeat", true},
		{plugin, false, "$share/g/plugins/other/heartbeat", true},
		{plugin, false, "$share/g/Notifications", false},
		{plugin, false, "plugins/other/status", false},
		{plugin, false, "Notifications", false},
		{plugin, false, "#", false},
		{plugin, false, "bad/x/filter", false},
		{admin, true, "plugins/hb/heartbeat", false},
		{admin, true, "AuditMessage", false},
		{admin, false, "#", true},
		{admin, false, "$SYS/#", true},
	}
	for _, tc := range cases {
		got := tc.g.canRead(tc.topic)
		if tc.publish {
			got = tc.g.canPublish(tc.topic)
		}
		if got != tc.want {
			t.Errorf("%s publish=%v %q = %v, want %v", tc.g.id.Role, tc.publish, tc.topic, got, tc.want)
		}
	}
	if none := grantsFor(pki.Identity{Role: "other", Name: "x"}, topics); none.canRead("x") || none.canPublish("x") {
		t.Error("an unknown role was granted something")
	}
}

func TestBoundClientID(t *testing.T) {
	cases := []struct {
		id   string
		want bool
	}{
		{"plugin/hb", true},
		{"plugin/hb/1", true},
		{"plugin/hb/", false},
		{"plugin/hb2", false},
		{"plugin/h", false},
		{"hb", false},
		{"", false},
	}
	for _, tc := range cases {
		if got := boundClientID("plugin/hb", tc.id); got != tc.want {
			t.Errorf("boundClientID(plugin/hb, %q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}
