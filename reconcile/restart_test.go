package reconcile

import (
	"testing"
	"time"

	"warden/schema"
)

func TestRestartPolicyOf(t *testing.T) {
	tests := []struct {
		name        string
		in          schema.RestartPolicy
		attemptsSet bool
		want        RestartPolicy
	}{
		{"defaults", schema.RestartPolicy{}, false,
			RestartPolicy{RestartOnFailure, 100 * time.Millisecond, time.Minute, 5, 10 * time.Minute}},
		{"design example", schema.RestartPolicy{Policy: "always", BackoffSeconds: 1, MaxRestarts: 10}, true,
			RestartPolicy{RestartAlways, time.Second, time.Minute, 10, 10 * time.Minute}},
		{"explicit zero restarts", schema.RestartPolicy{Policy: "always", MaxRestarts: 0}, true,
			RestartPolicy{RestartAlways, 100 * time.Millisecond, time.Minute, 0, 10 * time.Minute}},
		{"long backoff raises the cap", schema.RestartPolicy{Policy: "never", BackoffSeconds: 600, WindowSeconds: 30}, false,
			RestartPolicy{RestartNever, 10 * time.Minute, 10 * time.Minute, 5, 30 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RestartPolicyOf(tt.in, tt.attemptsSet); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRestartTracker(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	crash := func(d time.Duration) Exit { return Exit{At: at(d), Code: 3} }
	type step struct {
		exit Exit
		want RestartDecision // Detail is not compared
	}
	restart := func(d time.Duration) RestartDecision {
		return RestartDecision{Restart: true, Delay: d, Reason: ReasonRestart}
	}
	giveUp := RestartDecision{Reason: ReasonTooManyRestarts}
	base := RestartPolicy{Mode: RestartOnFailure, Delay: 100 * time.Millisecond, MaxDelay: time.Second,
		Attempts: 3, Window: time.Minute}
	with := func(f func(*RestartPolicy)) RestartPolicy { p := base; f(&p); return p }

	tests := []struct {
		name   string
		policy RestartPolicy
		steps  []step
	}{
		{"crash loop backs off exponentially, then gives up", base, []step{
			{crash(0), restart(100 * time.Millisecond)},
			{crash(time.Second), restart(200 * time.Millisecond)},
			{crash(2 * time.Second), restart(400 * time.Millisecond)},
			{crash(3 * time.Second), giveUp},
		}},
		{"restarts older than the window are forgotten", base, []step{
			{crash(0), restart(100 * time.Millisecond)},
			{crash(10 * time.Second), restart(200 * time.Millisecond)},
			{crash(61 * time.Second), restart(200 * time.Millisecond)}, // the first fell out
			{crash(200 * time.Second), restart(100 * time.Millisecond)},
		}},
		{"delay is capped", with(func(p *RestartPolicy) { p.Attempts = 10 }), []step{
			{crash(0), restart(100 * time.Millisecond)},
			{crash(1), restart(200 * time.Millisecond)},
			{crash(2), restart(400 * time.Millisecond)},
			{crash(3), restart(800 * time.Millisecond)},
			{crash(4), restart(time.Second)},
			{crash(5), restart(time.Second)},
		}},
		{"on-failure: a clean exit is not restarted", base, []step{
			{Exit{At: at(0), Code: 0}, RestartDecision{Reason: ReasonExitedCleanly}},
		}},
		{"on-failure: a signal is a failure", base, []step{
			{Exit{At: at(0), Code: -1, Signal: "SIGKILL"}, restart(100 * time.Millisecond)},
		}},
		{"always: a clean exit is restarted", with(func(p *RestartPolicy) { p.Mode = RestartAlways }), []step{
			{Exit{At: at(0), Code: 0}, restart(100 * time.Millisecond)},
		}},
		{"never: not even a crash", with(func(p *RestartPolicy) { p.Mode = RestartNever }), []step{
			{crash(0), RestartDecision{Reason: ReasonPolicyNever}},
		}},
		{"a stop by the supervisor restarts at once and is not counted", with(func(p *RestartPolicy) { p.Attempts = 1 }), []step{
			{Exit{At: at(0), Code: 0, Stopped: true}, RestartDecision{Restart: true, Reason: ReasonStopped}},
			{Exit{At: at(1), Code: -1, Signal: "SIGTERM", Stopped: true}, RestartDecision{Restart: true, Reason: ReasonStopped}},
			{crash(2), restart(100 * time.Millisecond)},
			{crash(3), giveUp},
		}},
		{"a hung plugin counts as a failure", with(func(p *RestartPolicy) { p.Attempts = 1 }), []step{
			{Exit{At: at(0), Code: -1, Signal: "SIGKILL", Hung: true, Stopped: true}, restart(100 * time.Millisecond)},
			{Exit{At: at(1), Code: -1, Signal: "SIGKILL", Hung: true, Stopped: true}, giveUp},
		}},
		{"after a healthy run the restart is immediate and the history starts again", base, []step{
			{crash(0), restart(100 * time.Millisecond)},
			{crash(time.Second), restart(200 * time.Millisecond)},
			{Exit{At: at(30 * time.Second), Code: -1, Signal: "SIGKILL", Ran: StableRun}, restart(0)},
			{crash(31 * time.Second), restart(200 * time.Millisecond)},
			{crash(32 * time.Second), restart(400 * time.Millisecond)},
			{crash(33 * time.Second), giveUp},
		}},
		{"a short run is not healthy", base, []step{
			{Exit{At: at(0), Code: 3, Ran: StableRun - time.Millisecond}, restart(100 * time.Millisecond)},
		}},
		{"a hung plugin's long run is not healthy", base, []step{
			{Exit{At: at(0), Code: -1, Signal: "SIGKILL", Hung: true, Ran: time.Hour}, restart(100 * time.Millisecond)},
		}},
		{"maxRestarts 0 gives up even after a healthy run", with(func(p *RestartPolicy) { p.Attempts = 0 }), []step{
			{Exit{At: at(0), Code: 3, Ran: time.Hour}, giveUp},
		}},
		{"maxRestarts 0 gives up at the first failure", with(func(p *RestartPolicy) { p.Mode = RestartAlways; p.Attempts = 0 }), []step{
			{crash(0), giveUp},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newRestartTracker(tt.policy)
			for i, s := range tt.steps {
				got := tr.Next(s.exit)
				got.Detail = ""
				if got != s.want {
					t.Fatalf("step %d (%s): got %+v, want %+v", i, s.exit, got, s.want)
				}
			}
		})
	}
}

func TestExitString(t *testing.T) {
	tests := []struct {
		exit Exit
		want string
	}{
		{Exit{Code: 3}, "exit code 3"},
		{Exit{Code: -1, Signal: "SIGKILL"}, "killed by SIGKILL"},
		{Exit{Code: -1, Signal: "SIGKILL", Hung: true}, "hung (no heartbeat), killed by SIGKILL"},
	}
	for _, tt := range tests {
		if got := tt.exit.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
}
