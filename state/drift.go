package state

import (
	"encoding/json"
	"sort"
	"time"
)

// Drift record states.
const (
	DriftOpen       = "open"
	DriftCorrected  = "corrected"
	DriftUnresolved = "unresolved"
)

// DriftRecord is one difference found between desired and actual state.
// In JSON (stored and served) it has the API's shape, where the object is
// named "id" (DESIGN.md) and the record's own id is "recordId".
type DriftRecord struct {
	ID          string     `json:"recordId"`
	Kind        string     `json:"kind"`
	Name        string     `json:"id"` // the document id or managed path
	Field       string     `json:"field"`
	Desired     string     `json:"desired"`
	Actual      string     `json:"actual"`
	State       string     `json:"state"`
	Action      string     `json:"action"`
	Error       string     `json:"error,omitempty"`
	DetectedAt  time.Time  `json:"detectedAt"`
	CorrectedAt *time.Time `json:"correctedAt,omitempty"`
}

// PutDrift stores (creates or updates) a drift record by its ID.
func (s *Store) PutDrift(r DriftRecord) error { return s.Put(Drift, r.ID, r) }

// DriftRecords returns every drift record, newest first.
func (s *Store) DriftRecords() ([]DriftRecord, error) {
	var out []DriftRecord
	err := s.List(Drift, func(_ string, v json.RawMessage) error {
		var r DriftRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].DetectedAt.After(out[j].DetectedAt) })
	return out, err
}

// PruneDrift deletes records detected before cutoff that are no longer open.
func (s *Store) PruneDrift(cutoff time.Time) (int, error) {
	recs, err := s.DriftRecords()
	if err != nil {
		return 0, err
	}
	var drop []string
	for _, r := range recs {
		if r.DetectedAt.Before(cutoff) && r.State != DriftOpen {
			drop = append(drop, r.ID)
		}
	}
	return len(drop), s.Delete(Drift, drop...)
}
