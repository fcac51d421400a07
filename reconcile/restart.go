package reconcile

import (
	"fmt"
	"time"

	"warden/schema"
)

// Restart policies of a Plugin document (spec.restart.policy).
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// Defaults of a RestartPolicy. The first delay matches systemd's
// RestartSec=100ms; the attempts and window are systemd's
// StartLimitBurst=5 over a window long enough that the exponential delays
// of a crash loop fit inside it.
const (
	DefaultRestartDelay    = 100 * time.Millisecond
	DefaultRestartMaxDelay = time.Minute
	DefaultRestartAttempts = 5
	DefaultRestartWindow   = 10 * time.Minute
	// StableRun is how long a run must last to count as healthy: the
	// restart after a healthy run is immediate and starts a new restart
	// history, so backoff and giving up apply only to repeated failures
	// (as Kubernetes forgets a CrashLoopBackOff after a healthy run).
	StableRun = 10 * time.Second
)

// Reasons a RestartDecision gives.
const (
	ReasonRestart         = "restart"           // restart after Delay
	ReasonStopped         = "stopped"           // the supervisor stopped it: start again at once
	ReasonPolicyNever     = "policy never"      // restart.policy is never
	ReasonExitedCleanly   = "exited cleanly"    // exit code 0 under on-failure
	ReasonTooManyRestarts = "too many restarts" // maxRestarts within windowSeconds: give up
)

// RestartPolicy is a Plugin's restart block with the defaults filled in.
type RestartPolicy struct {
	Mode     string        // RestartAlways, RestartOnFailure or RestartNever
	Delay    time.Duration // first delay; doubled for every restart in the window
	MaxDelay time.Duration // cap of the delay (never below Delay)
	Attempts int           // restarts allowed within Window; one more gives up
	Window   time.Duration
}

// RestartPolicyOf fills in the defaults of a document's restart block.
// attemptsSet says whether maxRestarts was written in the document, so
// that an explicit 0 means "no restart" rather than "the default".
func RestartPolicyOf(r schema.RestartPolicy, attemptsSet bool) RestartPolicy {
	p := RestartPolicy{Mode: r.Policy, Delay: DefaultRestartDelay, MaxDelay: DefaultRestartMaxDelay,
		Attempts: DefaultRestartAttempts, Window: DefaultRestartWindow}
	if p.Mode == "" {
		p.Mode = RestartOnFailure // the schema's default
	}
	if r.BackoffSeconds > 0 {
		p.Delay = time.Duration(r.BackoffSeconds * float64(time.Second))
	}
	p.MaxDelay = max(p.MaxDelay, p.Delay)
	if attemptsSet || r.MaxRestarts > 0 {
		p.Attempts = r.MaxRestarts
	}
	if r.WindowSeconds > 0 {
		p.Window = time.Duration(r.WindowSeconds) * time.Second
	}
	return p
}

// Exit is how one run of a plugin ended, as the restart tracker sees it.
type Exit struct {
	At     time.Time
	Code   int    // exit code; -1 when killed by a signal
	Signal string // "SIGKILL", ... when killed by a signal
	Hung   bool   // killed by the supervisor for missing heartbeats
	// Ran is how long the run lasted (zero when unknown).
	Ran time.Duration
	// Stopped says the supervisor ended the run on purpose (document
	// changed or removed, restart requested, certificate renewal, agent
	// stopping): not a failure and not counted.
	Stopped bool
}

// Failed reports whether the run ended in a way on-failure restarts.
func (e Exit) Failed() bool { return e.Hung || e.Signal != "" || e.Code != 0 }

// String describes the exit for logs, drift records and audit details.
func (e Exit) String() string {
	var s string
	switch {
	case e.Signal != "":
		s = "killed by " + e.Signal
	default:
		s = fmt.Sprintf("exit code %d", e.Code)
	}
	if e.Hung {
		s = "hung (no heartbeat), " + s
	}
	return s
}

// RestartDecision is the tracker's answer to an exit.
type RestartDecision struct {
	Restart bool
	Delay   time.Duration // wait this long after the exit before starting again
	Reason  string        // one of the Reason constants
	Detail  string        // for people: "3 restarts within 1m0s", ...
}

// restartTracker is the restart policy of one plugin document as a small
// pure object (nomad's restart tracker): given an exit, it answers
// "restart after d" or "do not", with a reason. It keeps the times of the
// restarts it allowed within the window; it does no I/O and reads no clock.
// It is not safe for concurrent use (the plugin's lock guards it).
type restartTracker struct {
	policy   RestartPolicy
	restarts []time.Time // restarts allowed, oldest first, pruned to the window
}

func newRestartTracker(p RestartPolicy) *restartTracker { return &restartTracker{policy: p} }

// Next decides what follows exit e and, when it is a counted restart,
// records it.
func (t *restartTracker) Next(e Exit) RestartDecision {
	if e.Stopped && !e.Hung {
		return RestartDecision{Restart: true, Reason: ReasonStopped}
	}
	p := t.policy
	switch {
	case p.Mode == RestartNever:
		return RestartDecision{Reason: ReasonPolicyNever, Detail: e.String()}
	case p.Mode == RestartOnFailure && !e.Failed():
		return RestartDecision{Reason: ReasonExitedCleanly, Detail: e.String()}
	}
	if e.Ran >= StableRun && !e.Hung && p.Attempts > 0 {
		t.restarts = t.restarts[:0]
		t.restarts = append(t.restarts, e.At)
		return RestartDecision{Restart: true, Reason: ReasonRestart,
			Detail: fmt.Sprintf("restart at once after a healthy run of %s", e.Ran.Round(time.Second))}
	}
	t.prune(e.At)
	n := len(t.restarts)
	if n >= p.Attempts {
		return RestartDecision{Reason: ReasonTooManyRestarts,
			Detail: fmt.Sprintf("%s after %d restarts within %s", e.String(), n, p.Window)}
	}
	t.restarts = append(t.restarts, e.At)
	return RestartDecision{Restart: true, Delay: t.delay(n), Reason: ReasonRestart,
		Detail: fmt.Sprintf("restart %d of %d within %s", n+1, p.Attempts, p.Window)}
}

// delay is Delay·2^n, capped at MaxDelay.
func (t *restartTracker) delay(n int) time.Duration {
	d := t.policy.Delay
	for range n {
		if d >= t.policy.MaxDelay/2 {
			return t.policy.MaxDelay
		}
		d *= 2
	}
	return min(d, t.policy.MaxDelay)
}

// prune forgets restarts older than the window before now.
func (t *restartTracker) prune(now time.Time) {
	cut := now.Add(-t.policy.Window)
	i := 0
	for i < len(t.restarts) && !t.restarts[i].After(cut) {
		i++
	}
	t.restarts = t.restarts[i:]
}
