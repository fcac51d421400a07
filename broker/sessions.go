package broker

import (
	"fmt"

	"warden/pki"
)

// Session limits. mochi's MaximumClients (maxClients) counts every
// connection alike, so one plugin could hold all of them and lock the
// operator out; the broker keeps its own count per identity on top of it.
const (
	maxClients = 1024
	// adminReserve connections are for role admin only: the other roles
	// together never hold more than maxClients-adminReserve.
	adminReserve = 64
	// maxPerIdentity bounds the sessions of one plugin (or any non-admin
	// identity): a plugin needs one, a few during a reconnect or restart.
	maxPerIdentity = 8
)

// admit counts a new session of identity id on c, or refuses it when the
// identity or the shared pool is full. The count is given back when the
// connection closes (untrack).
func (b *Broker) admit(c *conn, id pki.Identity) error {
	who := id.Role + "/" + id.Name
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.conns[c]; !ok {
		return fmt.Errorf("connection closed")
	}
	if c.counted != "" {
		return nil
	}
	if id.Role != pki.RoleAdmin {
		if b.perIdentity[who] >= maxPerIdentity {
			return fmt.Errorf("%s holds %d sessions already (the limit per identity)", who, maxPerIdentity)
		}
		if b.shared >= maxClients-adminReserve {
			return fmt.Errorf("%d non-admin sessions are open (the rest is kept for admin)", b.shared)
		}
		b.shared++
	}
	b.perIdentity[who]++
	c.counted, c.countedAdmin = who, id.Role == pki.RoleAdmin
	return nil
}

// release gives back c's session count; b.mu is held.
func (b *Broker) release(c *conn) {
	if c.counted == "" {
		return
	}
	if b.perIdentity[c.counted]--; b.perIdentity[c.counted] <= 0 {
		delete(b.perIdentity, c.counted)
	}
	if !c.countedAdmin {
		b.shared--
	}
	c.counted = ""
}
