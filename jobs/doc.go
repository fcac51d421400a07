// Package jobs runs Job documents: a scheduler that turns their triggers
// (cron schedules, intervals, one-time runAt, audit events, Startup, manual
// runs) into runs, and a runner that executes each run's tasks as real
// processes in their own process group, with timeouts, privilege drop,
// bounded output capture and a stored run record.
//
// It is not a controller file in reconcile/ as DESIGN.md's layout suggests:
// a Job is not converged to a level (nothing on the machine says "the job
// is done"), it is an edge-triggered scheduler plus a process supervisor
// with its own timers, queue and history. Like the controllers, it only
// reads desired state (the store's current generation) and reports through
// the audit writer; it never writes desired state.
package jobs
