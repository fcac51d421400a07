package state

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// keySize is the AES-256 data key length.
const keySize = 32

// sealer encrypts values with AES-256-GCM and derives opaque key names, so
// neither values nor bucket keys in warden.db reveal what they hold.
type sealer struct {
	aead cipher.AEAD
	name []byte // HMAC key for key names, derived from the data key
}

func newSealer(key []byte) (*sealer, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("warden key names v1"))
	return &sealer{aead: aead, name: m.Sum(nil)}, nil
}

// seal encrypts plain; ad (bucket and key) is authenticated so a value
// cannot be moved to another key unnoticed.
func (s *sealer) seal(plain, ad []byte) []byte {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		panic("state: no randomness: " + err.Error())
	}
	return s.aead.Seal(nonce, nonce, plain, ad)
}

func (s *sealer) open(sealed, ad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead() {
		return nil, ErrCorrupt
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], ad)
	if err != nil {
		return nil, ErrCorrupt
	}
	return plain, nil
}

// keyName maps a logical key ("Policy/deny-netcat") to 16 opaque bytes.
func (s *sealer) keyName(bucket, key string) []byte {
	m := hmac.New(sha256.New, s.name)
	m.Write([]byte(bucket))
	m.Write([]byte{0})
	m.Write([]byte(key))
	return m.Sum(nil)[:16]
}

// loadKey reads the data key, creating it (0600) only when create is set:
// a database without its key must fail, never start over silently.
func loadKey(path string, create bool) ([]byte, error) {
	key, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil, fmt.Errorf("%w: %s", ErrKeyMissing, path)
		}
		key = make([]byte, keySize)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create data key: %w", err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("write data key: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, fmt.Errorf("sync data key: %w", err)
		}
		return key, f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("read data key: %w", err)
	}
	if len(key) != keySize {
		return nil, fmt.Errorf("%w: %s holds %d bytes, want %d", ErrWrongKey, path, len(key), keySize)
	}
	return key, nil
}

// deriveKey derives a key for one purpose from the data key.
func deriveKey(key []byte, purpose string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(purpose))
	return m.Sum(nil)
}
