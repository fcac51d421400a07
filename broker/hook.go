package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"warden/audit"
	"warden/pki"
)

// hook is the broker's authentication and authorization, plugged into
// mochi. Authentication runs in OnConnect rather than OnConnectAuthenticate
// so that the CONNACK can say "not authorized" (OnConnectAuthenticate can
// only answer "bad user name or password"); OnConnectAuthenticate then lets
// through exactly the clients OnConnect accepted.
type hook struct {
	mqtt.HookBase
	b *Broker
}

func (h *hook) ID() string { return "warden-auth" }

func (h *hook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnSubscribe:
		return true
	}
	return false
}

// sessionOf returns the accepted session of a network client, nil for the
// inline client, a refused or a pending one.
func sessionOf(cl *mqtt.Client) *session {
	c, ok := cl.Net.Conn.(*conn)
	if !ok {
		return nil
	}
	s := c.sess.Load()
	if s == nil || s.grants == nil {
		return nil
	}
	return s
}

// OnConnect identifies the client by its certificate and binds its client
// id and will to that identity. A refusal is audited, answered with a
// CONNACK and ends the connection.
func (h *hook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	c, ok := cl.Net.Conn.(*conn)
	if !ok {
		return errors.New("broker: connection not from the TLS listener")
	}
	if err := c.handshake(); err != nil {
		return err // audited by handshake
	}
	state := c.ConnectionState()
	pending := &session{cl: cl}
	if len(state.PeerCertificates) > 0 {
		pending.serial = pki.SerialString(state.PeerCertificates[0].SerialNumber)
	}
	// Published before Identify: a DisconnectSerial that follows a Revoke
	// either finds this connection or happens before Identify reads the
	// revocation.
	c.sess.Store(pending)
	id, err := h.b.opts.CA.Identify(state)
	if err != nil {
		h.b.refuse(c, refusal{typ: audit.ProcessAuthenticationFailed, reason: err.Error(),
			key: reasonKey(err) + "|" + pending.serial, clientID: cl.ID})
		return h.deny(cl, packets.ErrNotAuthorized, err)
	}
	who := id.Role + "/" + id.Name
	if pk.Connect.ClientIdentifier == "" {
		cl.ID = who + "/" + randomSuffix()
		cl.Properties.Props.AssignedClientID = cl.ID
	} else if !boundClientID(who, cl.ID) {
		err := fmt.Errorf("client id %q is not %s or %s/SUFFIX", cl.ID, who, who)
		h.b.refuse(c, refusal{typ: audit.AuthorizationFailed, identity: who, reason: err.Error(),
			key: who + "|client-id|" + cl.ID, clientID: cl.ID})
		return h.deny(cl, packets.ErrClientIdentifierNotValid, err)
	}
	g := grantsFor(id, h.b.opts.Topics)
	if pk.Connect.WillFlag && !g.canPublish(pk.Connect.WillTopic) {
		err := fmt.Errorf("%s may not publish its will to %q", who, pk.Connect.WillTopic)
		h.b.refuse(c, refusal{typ: audit.AuthorizationFailed, identity: who, reason: err.Error(),
			key: who + "|will|" + pk.Connect.WillTopic, clientID: cl.ID, action: "will", topic: pk.Connect.WillTopic})
		return h.deny(cl, packets.ErrNotAuthorized, err)
	}
	if err := h.b.admit(c, id); err != nil {
		h.b.refuse(c, refusal{typ: audit.AuthorizationFailed, identity: who, reason: "session limit: " + err.Error(),
			key: who + "|sessions", clientID: cl.ID})
		return h.deny(cl, packets.ErrQuotaExceeded, err)
	}
	c.sess.Store(&session{cl: cl, serial: pending.serial, grants: g})
	h.b.log.Debug("client connected", "identity", who, "serial", id.Serial, "client", cl.ID, "remote", cl.Net.Remote)
	return nil
}

func (h *hook) deny(cl *mqtt.Client, code packets.Code, err error) error {
	_ = h.b.srv.SendConnack(cl, code, false, nil)
	return fmt.Errorf("broker: connect refused: %w", err)
}

// OnConnectAuthenticate lets through the clients OnConnect accepted.
func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, _ packets.Packet) bool {
	return sessionOf(cl) != nil
}

// OnACLCheck authorizes publishes (write) and subscriptions and deliveries
// (read). Refused publishes are audited here; refused subscriptions in
// OnSubscribe, because mochi also asks about every delivery.
func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	s := sessionOf(cl)
	if s == nil {
		return false
	}
	if !write {
		return s.grants.canRead(topic)
	}
	if s.grants.canPublish(topic) {
		return true
	}
	h.b.refuseTopic(cl, s, "publish", topic)
	return false
}

// OnSubscribe audits the filters of a SUBSCRIBE that OnACLCheck will
// refuse; mochi answers them with "not authorized" and keeps the others.
func (h *hook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	s := sessionOf(cl)
	if s == nil {
		return pk
	}
	for _, f := range pk.Filters {
		if mqtt.IsValidFilter(f.Filter, false) && !s.grants.canRead(f.Filter) {
			h.b.refuseTopic(cl, s, "subscribe", f.Filter)
		}
	}
	return pk
}

// boundClientID reports whether id belongs to identity who (ROLE/NAME):
// who itself or who/SUFFIX. Names cannot contain "/", so no identity's
// client ids are a prefix of another's.
func boundClientID(who, id string) bool {
	return id == who || (strings.HasPrefix(id, who+"/") && len(id) > len(who)+1)
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// reasonKey names the class of an Identify error, for rate limiting.
func reasonKey(err error) string {
	for _, e := range []error{pki.ErrNoCertificate, pki.ErrUnknownCA, pki.ErrExpired, pki.ErrRevoked, pki.ErrInvalidCertificate} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "other"
}

// DisconnectSerial ends every connection authenticated (or authenticating)
// with the certificate of this serial and returns how many there were. The
// plugin supervisor calls it after revoking a stopped plugin's certificate
// (CA.Revoke first, so the client cannot connect again).
func (b *Broker) DisconnectSerial(serial string) int {
	serial = strings.TrimLeft(strings.ToLower(strings.TrimPrefix(serial, "0x")), "0")
	if serial == "" {
		return 0
	}
	n := 0
	for _, c := range b.tracked() {
		s := c.sess.Load()
		if s == nil || s.serial != serial {
			continue
		}
		n++
		b.disconnect(c, s, "certificate revoked")
	}
	return n
}

func (b *Broker) disconnect(c *conn, s *session, why string) {
	b.log.Info("disconnecting client", "client", s.cl.ID, "serial", s.serial, "reason", why)
	if s.grants == nil {
		c.Close() // not connected yet: no DISCONNECT to send
		return
	}
	_ = b.srv.DisconnectClient(s.cl, packets.ErrNotAuthorized)
}

// Sweep identifies every connected client again and disconnects (and
// audits) those whose certificate no longer identifies them: expired, or
// revoked without a DisconnectSerial. It returns how many it disconnected.
func (b *Broker) Sweep() int {
	n := 0
	for _, c := range b.tracked() {
		s := c.sess.Load()
		if s == nil || s.grants == nil {
			continue
		}
		if _, err := b.opts.CA.Identify(c.ConnectionState()); err != nil {
			who := s.grants.id.Role + "/" + s.grants.id.Name
			b.refuse(c, refusal{typ: audit.ProcessAuthenticationFailed, identity: who, reason: err.Error(),
				key: "sweep|" + s.serial, clientID: s.cl.ID})
			b.disconnect(c, s, err.Error())
			n++
		}
	}
	return n
}
