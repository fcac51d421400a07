package schema

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/robfig/cron/v3"
)

// TestCronAgreesWithScheduler: every schedule the schema accepts, the job
// scheduler's parser (robfig/cron, standard fields and descriptors) accepts
// too, so a valid Job never fails at run time on its schedule.
func TestCronAgreesWithScheduler(t *testing.T) {
	parser := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	tokens := []string{"*", "0", "1", "5", "7", "12", "13", "23", "24", "31", "32", "59", "60", "00", "07",
		"*/5", "*/0", "1-5", "5-1", "0-59/15", "jan", "DEC", "mon-fri", "sun", "1,2,3", "mon,wed", "x", "", "?"}
	rng := rand.New(rand.NewPCG(3, 4))
	accepted := 0
	for i := 0; i < 3000; i++ {
		fields := make([]string, 5)
		for f := range fields {
			fields[f] = tokens[rng.IntN(len(tokens))]
		}
		expr := strings.Join(fields, " ")
		doc := withDoc(t, job, "spec.trigger.schedule", `"`+expr+`"`)
		if _, err := Validate(job, []byte(doc)); err != nil {
			continue
		}
		accepted++
		if _, err := parser.Parse(expr); err != nil {
			t.Errorf("schema accepts %q, scheduler refuses it: %v", expr, err)
		}
	}
	if accepted < 50 {
		t.Errorf("only %d of 3000 random schedules valid: the test tests little", accepted)
	}
}
