package state

import (
	"encoding/json"
	"errors"
	"testing"
)

// After Close, every call that needs the database fails with ErrClosed,
// the error the package documents for it.
func TestClosedStore(t *testing.T) {
	s := openT(t, keeperDir(t), Options{})
	s.Close()
	var v map[string]string
	_, getErr := s.Get(Status, "agent", &v)
	_, applyErr := s.ApplyGeneration(Apply{Source: "local"})
	_, gensErr := s.Generations()
	_, _, lastErr := s.LastAudit()
	for name, err := range map[string]error{
		"Put":             s.Put(Status, "agent", map[string]string{}),
		"Get":             getErr,
		"Delete":          s.Delete(Status, "agent"),
		"List":            s.List(Status, func(string, json.RawMessage) error { return nil }),
		"ApplyGeneration": applyErr,
		"Generations":     gensErr,
		"AppendAudit":     s.AppendAudit([]AuditEntry{{Seq: 1, Data: []byte("{}")}}),
		"LastAudit":       lastErr,
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: err = %v, want ErrClosed", name, err)
		}
	}
}
