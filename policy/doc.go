// Package policy is warden's policy engine: it compiles the Policy documents
// of a generation into an index, answers a Request with a Decision (and why),
// and protects itself with a per-source rate limiter and circuit breaker. It
// also holds the TOTP helpers the mfa control uses.
//
// The package is pure: no I/O, no goroutines, no clock. Every function that
// depends on time takes `now`; the caller owns waiting, storage and auditing.
// An Index is immutable once compiled and safe for concurrent use; Limiter
// and Breaker are safe for concurrent use.
//
// Semantics (precedence, statuses, controls, globs and variables) are
// described for operators in docs/policy.md.
package policy
