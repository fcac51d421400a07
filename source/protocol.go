package source

import (
	"encoding/json"
	"errors"
	"time"

	"warden/state"
)

// The backend protocol (JSON over HTTPS), shared by Sync and the reference
// backend in source/backend:
//
//	POST {url}/register                 RegisterRequest -> RegisterResponse
//	GET  {url}/agents/{id}/bundle       the group's bundle; ETag, If-None-Match -> 304; 404 when none
//	POST {url}/agents/{id}/audit        AuditBatch -> AuditAck
//
// Calls after registration carry "Authorization: Bearer CREDENTIAL"; the
// bundle request also carries GroupHeader, so a static file server can pick
// the file without knowing agents (docs/bundles.md shows nginx doing it).

// GroupHeader names the agent's group on bundle requests.
const GroupHeader = "X-Warden-Group"

// DefaultGroup is the group of an agent that names none.
const DefaultGroup = "default"

// RegisterRequest is the body of POST {url}/register.
type RegisterRequest struct {
	Token   string `json:"token"`
	Machine string `json:"machine"`
}

// RegisterResponse is the backend's answer to a registration.
type RegisterResponse struct {
	AgentID    string `json:"agentId"`
	Credential string `json:"credential"`
	Group      string `json:"group"`
}

// AuditBatch is the body of POST {url}/agents/{id}/audit: stored events,
// as stored (hash-chained JSON), in sequence order.
type AuditBatch struct {
	Events []json.RawMessage `json:"events"`
}

// AuditAck is the backend's answer: the highest sequence number it holds
// for this agent. Events at or below it are never sent again, and the
// backend ignores any it already holds, so a batch resent after a crash
// between store and acknowledgement is not stored twice.
type AuditAck struct {
	Acked uint64 `json:"acked"`
}

// Registration is what `warden register` keeps in the encrypted store
// (bucket state.Secrets, key RegistrationKey): never in a plain file.
type Registration struct {
	URL          string    `json:"url"`
	CAFile       string    `json:"caFile,omitempty"`
	AgentID      string    `json:"agentId"`
	Credential   string    `json:"credential"`
	Group        string    `json:"group"`
	RegisteredAt time.Time `json:"registeredAt"`
}

// RegistrationKey is the Secrets record holding the Registration.
const RegistrationKey = "backend-registration"

// ErrNotRegistered is returned by calls that need a registration.
var ErrNotRegistered = errors.New("agent is not registered with a backend (warden register)")

// LoadRegistration reads the agent's registration, or ErrNotRegistered.
func LoadRegistration(store *state.Store) (*Registration, error) {
	var r Registration
	ok, err := store.Get(state.Secrets, RegistrationKey, &r)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotRegistered
	}
	return &r, nil
}
