package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Reasons Identify refuses a peer. Test them with errors.Is; the wrapped
// message adds the serial and what was wrong, for the audit record.
var (
	ErrNoCertificate      = errors.New("no client certificate")
	ErrUnknownCA          = errors.New("certificate not issued by this agent's CA")
	ErrExpired            = errors.New("certificate expired or not yet valid")
	ErrRevoked            = errors.New("certificate revoked")
	ErrInvalidCertificate = errors.New("certificate carries no valid warden identity")
)

// Identity is who a verified client certificate says its holder is.
type Identity struct {
	Role     string // RoleAdmin or RolePlugin
	Name     string // "cli" for the admin CLI, the plugin id for plugins
	Serial   string // as SerialString prints it
	NotAfter time.Time
}

// String renders the identity as its URI, warden://ROLE/NAME.
func (id Identity) String() string { return identityURI(id.Role, id.Name).String() }

// Identify verifies the peer certificate of a TLS connection: signed by this
// CA, within its validity by the CA's clock, for client authentication, not
// revoked, carrying exactly one warden://ROLE/NAME URI. It never trusts the
// TLS layer's own verification, so it gives the same answer whatever
// ClientAuth the listener used. On error the Identity is empty.
func (c *CA) Identify(state tls.ConnectionState) (Identity, error) {
	if len(state.PeerCertificates) == 0 {
		return Identity{}, ErrNoCertificate
	}
	return c.IdentifyCertificate(state.PeerCertificates[0])
}

// IdentifyCertificate is Identify for a certificate obtained another way.
func (c *CA) IdentifyCertificate(leaf *x509.Certificate) (Identity, error) {
	if leaf == nil {
		return Identity{}, ErrNoCertificate
	}
	serial := SerialString(leaf.SerialNumber)
	now := c.now()
	sum := sha256.Sum256(leaf.Raw)
	if !c.wasVerified(sum) {
		_, err := leaf.Verify(x509.VerifyOptions{
			Roots:       c.pool,
			CurrentTime: now,
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		})
		if err != nil {
			return Identity{}, classify(err, serial, leaf)
		}
		c.rememberVerified(sum)
	} else if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return Identity{}, classify(x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired}, serial, leaf)
	}
	// Verify treats a certificate without extended key usages as good for
	// any: ours always name client authentication, and a CA never is a client.
	if leaf.IsCA || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return Identity{}, fmt.Errorf("%w: serial %s is not a client certificate", ErrInvalidCertificate, serial)
	}
	c.mu.RLock()
	_, revoked := c.revoked[serial]
	c.mu.RUnlock()
	if revoked {
		return Identity{}, fmt.Errorf("%w: serial %s (%s)", ErrRevoked, serial, leaf.Subject.CommonName)
	}
	role, name, err := parseIdentity(leaf)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: serial %s: %v", ErrInvalidCertificate, serial, err)
	}
	return Identity{Role: role, Name: name, Serial: serial, NotAfter: leaf.NotAfter}, nil
}

// maxVerified bounds the verified-leaf cache; past it the cache starts over.
const maxVerified = 4096

func (c *CA) wasVerified(sum [32]byte) bool {
	c.verifiedMu.Lock()
	defer c.verifiedMu.Unlock()
	_, ok := c.verified[sum]
	return ok
}

func (c *CA) rememberVerified(sum [32]byte) {
	c.verifiedMu.Lock()
	defer c.verifiedMu.Unlock()
	if c.verified == nil || len(c.verified) >= maxVerified {
		c.verified = make(map[[32]byte]struct{})
	}
	c.verified[sum] = struct{}{}
}

func classify(err error, serial string, leaf *x509.Certificate) error {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		return fmt.Errorf("%w: serial %s valid %s to %s", ErrExpired, serial,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	var ua x509.UnknownAuthorityError
	if errors.As(err, &ua) {
		return fmt.Errorf("%w: serial %s issued by %q", ErrUnknownCA, serial, leaf.Issuer.String())
	}
	return fmt.Errorf("%w: serial %s: %v", ErrInvalidCertificate, serial, err)
}

func parseIdentity(leaf *x509.Certificate) (role, name string, err error) {
	if len(leaf.URIs) != 1 {
		return "", "", fmt.Errorf("want one URI SAN, found %d", len(leaf.URIs))
	}
	u := leaf.URIs[0]
	name = strings.TrimPrefix(u.Path, "/")
	if u.Scheme != URIScheme || !validRole(u.Host) || !nameRE.MatchString(name) ||
		u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", fmt.Errorf("bad identity URI %q", u.String())
	}
	return u.Host, name, nil
}
