package engine_test

import (
	"context"
	"testing"

	"warden/engine"
	"warden/policy"
)

// BenchmarkEvaluate is one decision in the agent: limiter and breaker on
// the caller's keys, the policy decision, and every audit event the
// decision needs stored durably (bbolt in a temp folder) before the
// answer. The clock is the injected one, so nothing waits on the limiter.
func BenchmarkEvaluate(b *testing.B) {
	const allow = `{"kind": "Policy", "id": "id-ok", "spec": {"name": "id", "type": "PrivilegeElevation",
	 "status": "enforce", "controls": ["allow"], "filters": {"applications": [{"path": "/usr/bin/id"}]}}}`
	const timed = `{"kind": "Policy", "id": "apt-timed", "spec": {"name": "apt", "type": "PrivilegeElevation",
	 "status": "enforce", "controls": ["allow"], "durationSeconds": 600, "filters": {"applications": [{"path": "/usr/bin/apt"}]}}}`
	const settings = `{"kind": "Settings", "id": "agent", "spec": {"rateLimit": {"perMinute": 1000000, "queue": 100000}}}`
	for _, bc := range []struct {
		name string
		c    engine.Caller
		app  string
	}{
		{"user-allow", dave, "/usr/bin/id"},           // POLICY_EVALUATION
		{"user-allow-grant", dave, "/usr/bin/apt"},    // + ELEVATION_GRANTED and the grant record
		{"user-deny", dave, "/usr/bin/nc"},            // default deny
		{"plugin-allow", pluginCaller, "/usr/bin/id"}, // three source keys
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := setup(b, allow, timed, settings)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				q := &policy.Request{User: "dave", Machine: "ws-1", SessionID: "s-1", Action: policy.ActionElevate,
					Application: policy.Application{Path: bc.app}}
				if _, err := f.eng.Evaluate(ctx, bc.c, q, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
