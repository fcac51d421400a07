package pki

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"time"

	"warden/atomicfile"
)

// Revocation is one entry of certs/revoked.json.
type Revocation struct {
	Serial    string    `json:"serial"`
	RevokedAt time.Time `json:"revokedAt"`
	// Expires is the certificate's NotAfter: past it the certificate is
	// refused anyway and the entry is pruned.
	Expires time.Time `json:"expires"`
}

type revocationFile struct {
	Revoked []Revocation `json:"revoked"`
}

// Revoke makes every later Identify of the certificate with this serial
// fail with ErrRevoked. It takes effect in memory at once, even when writing
// certs/revoked.json fails (the error is returned), and survives restarts once
// written. Revoking a serial twice is not an error. serial is hexadecimal as
// Issue returns it or openssl prints it.
func (c *CA) Revoke(serial string) error {
	s, err := normalizeSerial(serial)
	if err != nil {
		return err
	}
	c.mu.RLock()
	expires, ok := c.issued[s]
	c.mu.RUnlock()
	if !ok {
		// Issued before this process started: no certificate of ours
		// lives longer than MaxClientTTL from now.
		expires = c.now().Add(MaxClientTTL)
	}
	return c.revoke(s, expires)
}

func (c *CA) revoke(serial string, expires time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.revoked[serial]; ok {
		return nil
	}
	c.revoked[serial] = Revocation{Serial: serial, RevokedAt: c.now().UTC(), Expires: expires.UTC()}
	delete(c.issued, serial)
	return c.persistLocked()
}

// Revoked lists the revocations in force, oldest first.
func (c *CA) Revoked() []Revocation {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]Revocation, 0, len(c.revoked))
	for _, r := range c.revoked {
		out = append(out, r)
	}
	sortRevocations(out)
	return out
}

// ReloadRevocations merges the entries of certs/revoked.json into the ones in
// force (an operator may add entries while the agent runs). Removing an entry
// from the file never un-revokes a certificate before the agent restarts.
func (c *CA) ReloadRevocations() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mergeFileLocked()
}

func (c *CA) loadRevocations() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mergeFileLocked()
}

func (c *CA) mergeFileLocked() error {
	entries, err := readRevocations(c.path(RevokedFile))
	if err != nil {
		// Fail closed: an unreadable list must not silently let revoked
		// certificates back in.
		return err
	}
	for _, r := range entries {
		s, err := normalizeSerial(r.Serial)
		if err != nil {
			return fmt.Errorf("%s: %w", c.path(RevokedFile), err)
		}
		if _, ok := c.revoked[s]; !ok {
			r.Serial = s
			if r.RevokedAt.IsZero() {
				r.RevokedAt = c.now().UTC()
			}
			if r.Expires.IsZero() {
				r.Expires = c.now().Add(MaxClientTTL).UTC()
			}
			c.revoked[s] = r
		}
	}
	c.pruneLocked()
	return nil
}

func readRevocations(path string) ([]Revocation, error) {
	data, err := readPublic(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f revocationFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f.Revoked, nil
}

func (c *CA) pruneLocked() {
	now := c.now()
	for s, r := range c.revoked {
		if now.After(r.Expires) {
			delete(c.revoked, s)
		}
	}
}

// persistLocked writes the list in force, merged with whatever an operator
// added to the file meanwhile, atomically and 0600.
func (c *CA) persistLocked() error {
	if err := c.mergeFileLocked(); err != nil {
		return err
	}
	out := make([]Revocation, 0, len(c.revoked))
	for _, r := range c.revoked {
		out = append(out, r)
	}
	sortRevocations(out)
	data, err := json.MarshalIndent(revocationFile{Revoked: out}, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(c.path(RevokedFile), append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("pki: write %s: %w", RevokedFile, err)
	}
	return nil
}

func sortRevocations(rs []Revocation) {
	slices.SortFunc(rs, func(a, b Revocation) int {
		if d := a.RevokedAt.Compare(b.RevokedAt); d != 0 {
			return d
		}
		return strings.Compare(a.Serial, b.Serial)
	})
}
