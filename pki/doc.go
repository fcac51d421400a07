// Package pki is the agent's local certificate authority: it keeps the CA in
// DIR/certs, issues short-lived client certificates that carry a caller's role
// and name, revokes them, identifies TLS peers, and serves a rotating server
// certificate with a TLS configuration restricted to TLS 1.2 and 1.3.
//
// Identities travel in a single URI SAN of the form warden://ROLE/NAME
// (warden://admin/cli, warden://plugin/heartbeat). Only certificates signed
// by this agent's CA, within their validity and not revoked, identify anyone.
package pki
