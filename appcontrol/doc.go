// Package appcontrol enforces ApplicationControl policies at exec time. It
// marks the configured mounts for fanotify FAN_OPEN_EXEC_PERM events, asks
// the policy engine about every exec the kernel holds (who runs it, from
// the kernel; what it is, from the file the kernel opened), answers allow
// or deny within a deadline, and audits blocked and would-be blocked execs
// as APPLICATION_BLOCKED.
//
// It is not a reconcile controller: a controller converges a state at its
// own pace, while this answers a stream of kernel events, each within
// 100 ms, on the exec path of the whole machine. The marks belong to the
// fanotify file descriptor, so when the agent stops or dies the kernel
// drops them and answers the events still pending with allow.
package appcontrol
