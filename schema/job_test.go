package schema

import (
	"strings"
	"testing"
)

// TestJobRules covers the Job rules the jobs package relies on: the
// recursion guard's cool-down, the time zone's shape, and runAs excluding
// workingDir.
func TestJobRules(t *testing.T) {
	const base = `{"kind": "Job", "id": "j", "spec": {"trigger": TRIGGER, "tasks": [TASK]}}`
	cases := []struct {
		name, trigger, task string
		wantErr             string // "" when valid
	}{
		{"defaults", `{}`, `{"command": "/bin/true"}`, ""},
		{"cooldown zero", `{"events": ["DriftDetected"], "eventCooldownSeconds": 0}`, `{"command": "/bin/true"}`, ""},
		{"cooldown negative", `{"eventCooldownSeconds": -1}`, `{"command": "/bin/true"}`, "spec.trigger.eventCooldownSeconds"},
		{"cooldown too long", `{"eventCooldownSeconds": 86401}`, `{"command": "/bin/true"}`, "spec.trigger.eventCooldownSeconds"},
		{"zone IANA", `{"schedule": "0 3 * * *", "timeZone": "America/Argentina/Buenos_Aires"}`, `{"command": "/bin/true"}`, ""},
		{"zone UTC", `{"schedule": "0 3 * * *", "timeZone": "UTC"}`, `{"command": "/bin/true"}`, ""},
		{"zone with space", `{"timeZone": "Europe Berlin"}`, `{"command": "/bin/true"}`, "spec.trigger.timeZone"},
		{"zone path", `{"timeZone": "../etc/passwd"}`, `{"command": "/bin/true"}`, "spec.trigger.timeZone"},
		{"runAs alone", `{}`, `{"command": "/usr/bin/id", "runAs": "nobody"}`, ""},
		{"workingDir alone", `{}`, `{"command": "/usr/bin/id", "workingDir": "out"}`, ""},
		{"runAs with workingDir", `{}`, `{"command": "/usr/bin/id", "runAs": "nobody", "workingDir": "out"}`, "spec.tasks[0].workingDir"},
		{"event unknown", `{"events": ["Shutdown"]}`, `{"command": "/bin/true"}`, "spec.trigger.events[0]"},
		{"command relative", `{}`, `{"command": "bin/true"}`, "spec.tasks[0].command"},
		{"schedule range backwards", `{"schedule": "0 3 * * 5-1"}`, `{"command": "/bin/true"}`, `spec.trigger.schedule: invalid value "0 3 * * 5-1" (beginning of range (5) beyond end of range (1)`},
		{"zone unknown", `{"schedule": "0 3 * * *", "timeZone": "Europe/Berln"}`, `{"command": "/bin/true"}`, `spec.trigger.timeZone: invalid value "Europe/Berln" (not a known time zone)`},
		{"runAt", `{"runAt": "2026-12-01T03:00:00.5+01:00"}`, `{"command": "/bin/true"}`, ""},
		{"runAt month 13", `{"runAt": "2026-13-01T03:00:00Z"}`, `{"command": "/bin/true"}`, "spec.trigger.runAt: invalid value \"2026-13-01T03:00:00Z\" (not an RFC 3339 time)"},
		{"runAt 25 o'clock", `{"runAt": "2026-12-01T25:00:00Z"}`, `{"command": "/bin/true"}`, "spec.trigger.runAt"},
		{"runAt no zone", `{"runAt": "2026-12-01T03:00:00"}`, `{"command": "/bin/true"}`, "spec.trigger.runAt"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := strings.NewReplacer("TRIGGER", c.trigger, "TASK", c.task).Replace(base)
			d, err := Validate("jobs/j.json", []byte(doc))
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("valid, want an error at %s (spec %+v)", c.wantErr, d.Job())
			}
			if !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("error = %v, want one at %s", err, c.wantErr)
			}
		})
	}
}

func TestJobCooldownDefault(t *testing.T) {
	d, err := Validate("jobs/j.json", []byte(`{"kind": "Job", "id": "j", "spec": {"trigger": {"events": ["Startup"]}, "tasks": [{"command": "/bin/true"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Job().Trigger.EventCooldownSeconds; got != 60 {
		t.Errorf("eventCooldownSeconds = %d, want the default 60", got)
	}
}
