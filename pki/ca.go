package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"warden/atomicfile"
)

// CALifetime is the validity of a newly created local CA.
const CALifetime = 10 * 365 * 24 * time.Hour

// CA is the agent's local certificate authority. Its key is read from and
// written to the certs folder only; nothing in this package hands it out.
// A CA is safe for concurrent use.
type CA struct {
	dir     string
	now     func() time.Time
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	pool    *x509.CertPool

	mu      sync.RWMutex
	revoked map[string]Revocation // by normalized serial
	issued  map[string]time.Time  // NotAfter of certificates issued since Open, by serial

	// verified holds the SHA-256 of leaves whose signature and key usage
	// verified against this CA, so a keep-alive client is not re-verified
	// (an ECDSA verification) on every request. Validity dates and
	// revocation are still checked on every call.
	verifiedMu sync.Mutex
	verified   map[[32]byte]struct{}
}

// Open loads the CA from certsDir/ca.pem and certsDir/ca-key.pem, creating
// the folder (0700) and a new ECDSA P-256 CA valid for CALifetime when
// ca.pem does not exist. It refuses a key file that is group- or
// world-accessible, a symlink, or owned by another user, and a CA whose key
// does not match or that has expired. now is the clock used for issuing and
// verifying (nil means time.Now).
func Open(certsDir string, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(certsDir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	removeStaleTemps(certsDir)
	c := &CA{dir: certsDir, now: now, revoked: map[string]Revocation{}, issued: map[string]time.Time{}}
	certPEM, err := readPublic(filepath.Join(certsDir, CACertFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A key without ca.pem is the remains of an interrupted creation:
		// no certificate can chain to a CA that was never written.
		err = c.create()
	case err == nil:
		err = c.load(certPEM)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	c.pool = x509.NewCertPool()
	c.pool.AddCert(c.cert)
	if err := c.loadRevocations(); err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return c, nil
}

func (c *CA) path(name string) string { return filepath.Join(c.dir, name) }

func (c *CA) create() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := c.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "warden local CA", Organization: []string{"warden"}},
		NotBefore:             now,
		NotAfter:              now.Add(CALifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	// The key first: ca.pem is the marker that the CA is complete.
	if err := atomicfile.Write(c.path(CAKeyFile), keyPEM, 0o600); err != nil {
		return err
	}
	if err := atomicfile.Write(c.path(CACertFile), certPEM, 0o600); err != nil {
		return err
	}
	c.cert, c.certPEM, c.key = cert, certPEM, key
	return nil
}

func (c *CA) load(certPEM []byte) error {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", c.path(CACertFile), err)
	}
	if !cert.IsCA {
		return fmt.Errorf("%s: not a CA certificate", c.path(CACertFile))
	}
	keyPEM, err := readPrivate(c.path(CAKeyFile))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s is missing while %s exists: restore the key, or remove %s to create a new CA (every certificate issued so far stops working)",
			c.path(CAKeyFile), c.path(CACertFile), c.path(CACertFile))
	}
	if err != nil {
		return err
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return fmt.Errorf("%s: %w", c.path(CAKeyFile), err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return fmt.Errorf("%s does not match %s", c.path(CAKeyFile), c.path(CACertFile))
	}
	if now := c.now(); now.After(cert.NotAfter) {
		return fmt.Errorf("%w: local CA %s expired at %s: remove %s and %s to create a new one",
			ErrExpired, c.path(CACertFile), cert.NotAfter.UTC().Format(time.RFC3339), c.path(CACertFile), c.path(CAKeyFile))
	}
	c.cert, c.certPEM, c.key = cert, certPEM, key
	return nil
}

// Dir returns the certs folder the CA lives in.
func (c *CA) Dir() string { return c.dir }

// CertPEM returns the CA certificate in PEM form (what clients trust).
func (c *CA) CertPEM() []byte { return append([]byte(nil), c.certPEM...) }

// Certificate returns the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Pool returns a pool holding only the CA certificate.
func (c *CA) Pool() *x509.CertPool { return c.pool.Clone() }

// sign creates a certificate from tmpl signed by the CA with a fresh ECDSA
// P-256 key and a random serial; NotAfter is clamped to the CA's own.
func (c *CA) sign(tmpl *x509.Certificate) (certPEM, keyPEM []byte, leaf *x509.Certificate, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	if tmpl.SerialNumber, err = newSerial(); err != nil {
		return nil, nil, nil, err
	}
	if tmpl.NotAfter.After(c.cert.NotAfter) {
		tmpl.NotAfter = c.cert.NotAfter
	}
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, nil, nil, err
	}
	if leaf, err = x509.ParseCertificate(der); err != nil {
		return nil, nil, nil, err
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, leaf, nil
}

func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, err
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

// SerialString renders a certificate serial the way this package names
// serials everywhere: lowercase hexadecimal without leading zeros.
func SerialString(n *big.Int) string { return n.Text(16) }

// normalizeSerial accepts a serial in hexadecimal as openssl or this package
// prints it (any case, optional colons or 0x prefix).
func normalizeSerial(s string) (string, error) {
	t := strings.TrimPrefix(strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", "")), "0x")
	n, ok := new(big.Int).SetString(t, 16)
	if !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("pki: invalid serial %q: want hexadecimal", s)
	}
	return SerialString(n), nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	switch block.Type {
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("key is %T, want ECDSA", k)
		}
		return ek, nil
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	}
	return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}
