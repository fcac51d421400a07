package schema

import (
	"strings"
	"testing"
)

// Restore trusts its input without checking it; what it builds must not
// answer Validate for the same bytes. A document stored by an older
// warden (or under an older schema) is validated afresh when it arrives
// again, and gets this schema's rules and defaults.
func TestRestoreDoesNotFeedValidate(t *testing.T) {
	raw := []byte(strings.Replace(designExamples[job], `"timeoutSeconds": 30`, `"timeoutSeconds": 0`, 1))
	if raw := string(raw); raw == designExamples[job] {
		t.Fatal("the test document did not change")
	}
	resetCache()
	// As stored before eventCooldownSeconds and its default existed.
	spec := []byte(`{"enabled":true,"priority":5,"concurrency":"forbid","trigger":{"schedule":"*/5 * * * *"},"tasks":[{"command":"/usr/bin/uname","timeoutSeconds":0}]}`)
	if _, err := Restore(KindJob, "inventory", raw, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := Validate("jobs/inventory.json", raw); err == nil || !strings.Contains(err.Error(), "timeoutSeconds") {
		t.Errorf("Validate after Restore of the same bytes: err = %v, want the timeoutSeconds rule", err)
	}
	good := []byte(designExamples[job])
	if _, err := Restore(KindJob, "inventory", good, spec); err != nil {
		t.Fatal(err)
	}
	d, err := Validate("jobs/inventory.json", good)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Job().Trigger.EventCooldownSeconds; got != 60 {
		t.Errorf("eventCooldownSeconds = %d after Restore of an old form, want the default 60", got)
	}
}
