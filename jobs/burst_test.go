package jobs

import (
	"context"
	"sync"
	"testing"

	"warden/audit"
)

// A burst of POLICY_EVALUATION events (which the scheduler also listens
// to, for PolicyEvaluationPending) cannot push out the DRIFT_DETECTED a job
// waits for: the subscription catches up from the store by sequence
// number instead of dropping what does not fit its queue.
func TestEventBurstDoesNotDropTrigger(t *testing.T) {
	h := newHarness(t, nil)
	h.apply(jobDoc("on-drift", `{"trigger": {"events": ["DriftDetected"], "eventCooldownSeconds": 0}, "tasks": [{"command": "/bin/true"}]}`))
	h.start()
	const writers, each = 64, 60
	var wg sync.WaitGroup
	var drift audit.Event
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if g == 0 && i == each/2 { // in the middle of the burst
					e, err := h.audit.Write(context.Background(), audit.Event{Type: audit.DriftDetected, Component: "test",
						TargetInfo: &audit.TargetInfo{Kind: "Path", ID: "x", Path: "/elsewhere/x"}})
					if err != nil {
						t.Error(err)
					}
					drift = e
				}
				if _, err := h.audit.Write(context.Background(), audit.Event{Type: audit.PolicyEvaluation, Component: "test",
					Evaluation: &audit.Evaluation{Decision: "allow", Effective: "allow"}}); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	if r := h.waitRuns("on-drift", 1)[0]; r.EventID != drift.ID {
		t.Fatalf("run for event %s; want the DRIFT_DETECTED %s", r.EventID, drift.ID)
	}
}
