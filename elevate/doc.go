// Package elevate is the user socket: the one door the root agent opens to
// unprivileged users (DIR/run/warden.sock). It builds an Actor for each
// connection from the kernel's peer credentials, speaks a small versioned
// protocol (protocol.go, docs/elevation.md), resolves and checks the
// executable a user asks for, and launches it as root with the caller's
// terminal when the policy engine allows it. The protocol is elevate/wire;
// the client side of `warden elevate`, `warden access` and
// `warden approvals` is elevate/client, which links nothing of the agent
// so that the small front (cmd/front) starts fast.
package elevate
