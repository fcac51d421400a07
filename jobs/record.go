package jobs

import "time"

// Run states (Run.State).
const (
	StateQueued    = "queued"    // waiting for a free slot (only ever in memory)
	StateRunning   = "running"   // a task is running
	StateSucceeded = "succeeded" // every task that ran succeeded or was allowed to fail
	StateFailed    = "failed"    // a task failed without continueOnError
	StateStopped   = "stopped"   // stopped from outside: replaced, job removed, agent stopping
	StateCancelled = "cancelled" // stopped before its first task started
	StateAbandoned = "abandoned" // the agent died while it ran; found at the next start
)

// Task states (TaskResult.State).
const (
	TaskSucceeded = "succeeded"
	TaskFailed    = "failed"
	TaskSkipped   = "skipped"
)

// Run is the stored record of one run of a job.
type Run struct {
	ID           string       `json:"id"`
	Job          string       `json:"job"`
	Trigger      string       `json:"trigger"`
	Event        string       `json:"event,omitempty"`   // for event triggers: the #JobEvent name
	EventID      string       `json:"eventId,omitempty"` // the audit event that fired it
	By           string       `json:"by,omitempty"`      // for manual runs: the caller's identity
	ScheduledFor *time.Time   `json:"scheduledFor,omitempty"`
	State        string       `json:"state"`
	Start        time.Time    `json:"start"`
	End          *time.Time   `json:"end,omitempty"`
	DurationMs   int64        `json:"durationMs"`
	ExitCode     *int         `json:"exitCode,omitempty"`
	Signal       string       `json:"signal,omitempty"`
	Error        string       `json:"error,omitempty"`
	Tasks        []TaskResult `json:"tasks"`
}

// TaskResult is what one task of a run did.
type TaskResult struct {
	Index      int        `json:"index"`
	Command    string     `json:"command"`
	State      string     `json:"state"`
	Start      *time.Time `json:"start,omitempty"`
	End        *time.Time `json:"end,omitempty"`
	DurationMs int64      `json:"durationMs"`
	PID        int        `json:"pid,omitempty"`
	ExitCode   *int       `json:"exitCode,omitempty"`
	Signal     string     `json:"signal,omitempty"`
	TimedOut   bool       `json:"timedOut,omitempty"`
	Error      string     `json:"error,omitempty"`
	// Output is the first MaxOutput bytes of stdout and stderr, interleaved
	// as written; OutputTruncatedBytes counts what was dropped after that.
	Output               string `json:"output"`
	OutputTruncatedBytes int64  `json:"outputTruncatedBytes"`
}

// RunSummary is a run without its tasks, as lists show it.
type RunSummary struct {
	ID       string     `json:"id"`
	Trigger  string     `json:"trigger"`
	Event    string     `json:"event,omitempty"`
	State    string     `json:"state"`
	Start    time.Time  `json:"start"`
	End      *time.Time `json:"end,omitempty"`
	ExitCode *int       `json:"exitCode,omitempty"`
	Signal   string     `json:"signal,omitempty"`
	Error    string     `json:"error,omitempty"`
}

func (r *Run) summary() *RunSummary {
	return &RunSummary{ID: r.ID, Trigger: r.Trigger, Event: r.Event, State: r.State, Start: r.Start,
		End: r.End, ExitCode: r.ExitCode, Signal: r.Signal, Error: r.Error}
}
