package state

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Bucket names a set of encrypted records kept by key.
type Bucket string

// The record buckets. Keys are stored as opaque HMACs; the logical key is
// kept inside the encrypted value.
const (
	Status    Bucket = "status"    // observed status, by component
	Drift     Bucket = "drift"     // drift records, by record id
	Grants    Bucket = "grants"    // elevation grants, by grant id
	Approvals Bucket = "approvals" // pending and decided approvals
	Secrets   Bucket = "secrets"   // MFA secrets, backend credentials
	JobRuns   Bucket = "jobruns"   // job run history
	Plugins   Bucket = "plugins"   // plugin runtime records
	// Privileges are what warden changed on the machine outside its root
	// and must undo by itself (the POSIX ACL entries of access grants),
	// by the path changed.
	Privileges Bucket = "privileges"
)

var allBuckets = []Bucket{Status, Drift, Grants, Approvals, Secrets, JobRuns, Plugins, Privileges}

type record struct {
	Key   string          `json:"k"`
	Value json.RawMessage `json:"v"`
}

// Put stores v (as JSON) under key, encrypted.
func (s *Store) Put(b Bucket, key string, v any) error {
	return s.PutMany(b, map[string]any{key: v})
}

// PutMany stores several records in one transaction.
func (s *Store) PutMany(b Bucket, kv map[string]any) error { return s.PutManyAudited(b, kv, nil) }

// PutManyAudited is PutMany that also appends audit entries (numbered by
// audit.Writer.Begin) in the same transaction: the records and the events
// that record them are on disk together or not at all.
func (s *Store) PutManyAudited(b Bucket, kv map[string]any, entries []AuditEntry) error {
	type sealed struct{ k, v []byte }
	all := make([]sealed, 0, len(kv))
	for key, v := range kv {
		raw, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", b, key, err)
		}
		plain, _ := json.Marshal(record{Key: key, Value: raw})
		k := s.seal.keyName(string(b), key)
		all = append(all, sealed{k, s.seal.seal(plain, ad([]byte(b), k))})
	}
	err := s.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(b))
		for _, r := range all {
			if err := bk.Put(r.k, r.v); err != nil {
				return err
			}
		}
		if len(entries) > 0 {
			return s.appendAudit(tx, entries)
		}
		return nil
	})
	if err == nil {
		s.advanceAudit(entries)
		s.changed(b)
	}
	return err
}

// Get reads key into v. It reports whether the record exists.
func (s *Store) Get(b Bucket, key string, v any) (bool, error) {
	k := s.seal.keyName(string(b), key)
	var plain []byte
	err := s.view(func(tx *bolt.Tx) error {
		sealed := tx.Bucket([]byte(b)).Get(k)
		if sealed == nil {
			return nil
		}
		var err error
		plain, err = s.seal.open(sealed, ad([]byte(b), k))
		return err
	})
	if err != nil || plain == nil {
		return false, err
	}
	var r record
	if err := json.Unmarshal(plain, &r); err != nil {
		return false, err
	}
	return true, json.Unmarshal(r.Value, v)
}

// Delete removes key; deleting a missing key is not an error.
func (s *Store) Delete(b Bucket, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	err := s.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte(b))
		for _, key := range keys {
			if err := bk.Delete(s.seal.keyName(string(b), key)); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		s.changed(b)
	}
	return err
}

// List calls fn for every record of b, in no particular order, inside one
// read transaction (a consistent view). fn must not call back into the store
// for writes.
func (s *Store) List(b Bucket, fn func(key string, value json.RawMessage) error) error {
	return s.view(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(b)).ForEach(func(k, v []byte) error {
			plain, err := s.seal.open(v, ad([]byte(b), k))
			if err != nil {
				return fmt.Errorf("%s: %w", b, err)
			}
			var r record
			if err := json.Unmarshal(plain, &r); err != nil {
				return err
			}
			return fn(r.Key, r.Value)
		})
	})
}
