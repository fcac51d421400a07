package source

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Key file names written by WriteKeyPair.
const (
	PrivateKeyFile = "bundle.key"
	PublicKeyFile  = "bundle.pub"
)

// KeyID is a public key's thumbprint: hex SHA-256 of its PKIX (DER)
// encoding. Manifests name their signing key by it, and Settings
// alternativeSignatures lists further trusted keys by it.
func KeyID(pub ed25519.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// WriteKeyPair generates an Ed25519 key pair and writes dir/bundle.key
// (PKCS#8 PEM, 0600) and dir/bundle.pub (PKIX PEM, 0644). It refuses to
// overwrite an existing private key: losing a signing key is not undoable.
func WriteKeyPair(dir string) (ed25519.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, PrivateKeyFile)
	f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("write private key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: privDER}); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, PublicKeyFile), EncodePublicKey(pub), 0o644); err != nil {
		return nil, err
	}
	return pub, nil
}

// EncodePublicKey returns pub as a PKIX "PUBLIC KEY" PEM block.
func EncodePublicKey(pub ed25519.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// LoadPrivateKey reads an Ed25519 private key from a PKCS#8 PEM file.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: no PKCS#8 \"PRIVATE KEY\" PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key (%T)", path, k)
	}
	return priv, nil
}

// ParsePublicKeys returns every Ed25519 "PUBLIC KEY" PEM block in data.
func ParsePublicKeys(data []byte) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "PUBLIC KEY" {
			continue
		}
		k, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("not an Ed25519 key (%T)", k)
		}
		out = append(out, pub)
	}
	if len(out) == 0 {
		return nil, errors.New("no \"PUBLIC KEY\" PEM block")
	}
	return out, nil
}

// LoadPublicKey reads the first Ed25519 public key of a PEM file.
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := ParsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys[0], nil
}

// Trust is the set of keys a bundle may be signed with.
//
// Keys in the trust folder are trusted outright. A thumbprint listed in the
// applied Settings' alternativeSignatures (added with Pin) trusts one more
// key, whose key material comes from either the trust folder or the
// bundle's own manifest.pub: the pin, not the bundle, is what makes it
// trusted, so a backend can rotate to a new key by first shipping Settings
// that pin it. A pinned thumbprint with no key material trusts nothing.
type Trust struct {
	keys   map[string]ed25519.PublicKey
	pinned map[string]bool
}

// NewTrust trusts exactly keys.
func NewTrust(keys ...ed25519.PublicKey) *Trust {
	t := &Trust{keys: map[string]ed25519.PublicKey{}, pinned: map[string]bool{}}
	for _, k := range keys {
		t.keys[KeyID(k)] = k
	}
	return t
}

// LoadTrust reads every *.pub and *.pem file in dir. A missing folder is
// an empty trust set; an unreadable or malformed key file is an error,
// because silently skipping it would hide a broken rotation.
func LoadTrust(dir string) (*Trust, error) {
	t := NewTrust()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("trust: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".pub") || strings.HasSuffix(name, ".pem")) {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("trust: %w", err)
		}
		keys, err := ParsePublicKeys(data)
		if err != nil {
			return nil, fmt.Errorf("trust: %s: %w", name, err)
		}
		for _, k := range keys {
			t.keys[KeyID(k)] = k
		}
	}
	return t, nil
}

// Pin trusts the keys with these thumbprints (Settings
// alternativeSignatures) when their key material is available.
func (t *Trust) Pin(thumbprints ...string) {
	for _, tp := range thumbprints {
		t.pinned[strings.ToLower(tp)] = true
	}
}

// KeyIDs lists the thumbprints of the keys trusted outright, sorted.
func (t *Trust) KeyIDs() []string {
	out := make([]string, 0, len(t.keys))
	for id := range t.keys {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// lookup returns the key for keyID and how it is trusted ("trust" or
// "alternativeSignatures"), with embedded as the bundle's manifest.pub.
func (t *Trust) lookup(keyID string, embedded []byte) (ed25519.PublicKey, string, error) {
	if k, ok := t.keys[keyID]; ok {
		return k, "trust", nil
	}
	if !t.pinned[keyID] {
		return nil, "", fmt.Errorf("%w: key %s is neither in trust/ nor listed in alternativeSignatures", ErrUntrustedKey, keyID)
	}
	if embedded == nil {
		return nil, "", fmt.Errorf("%w: key %s is listed in alternativeSignatures but no such public key is in trust/ or the bundle's %s", ErrUntrustedKey, keyID, SignerFile)
	}
	keys, err := ParsePublicKeys(embedded)
	if err != nil || len(keys) != 1 || KeyID(keys[0]) != keyID {
		return nil, "", fmt.Errorf("%w: %s is not the public key %s", ErrUntrustedKey, SignerFile, keyID)
	}
	return keys[0], "alternativeSignatures", nil
}
