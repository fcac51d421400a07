package audit

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"warden/state"
)

// Filter selects events for Query. Zero values match everything.
type Filter struct {
	Types []string
	Since time.Time
	User  string
	Limit int    // default 100, at most 10,000
	After uint64 // cursor: only events with a higher sequence number
}

// Query returns matching events, oldest first, and a cursor for the next
// page ("" when there is none).
func Query(store *state.Store, f Filter) ([]Event, string, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Limit > 10000 {
		f.Limit = 10000
	}
	types := map[string]bool{}
	for _, t := range f.Types {
		types[t] = true
	}
	var out []Event
	var scanErr error
	more := false
	err := store.AuditScan(f.After+1, false, func(a state.AuditEntry) bool {
		var e Event
		if err := json.Unmarshal(a.Data, &e); err != nil {
			scanErr = fmt.Errorf("audit event %d: %w", a.Seq, err)
			return false
		}
		if len(types) > 0 && !types[e.Type] {
			return true
		}
		if !f.Since.IsZero() && e.Time.Before(f.Since) {
			return true
		}
		if f.User != "" && (e.UserInfo == nil || e.UserInfo.User != f.User) {
			return true
		}
		if len(out) == f.Limit {
			more = true
			return false
		}
		e.Raw = a.Data
		out = append(out, e)
		return true
	})
	if err == nil {
		err = scanErr
	}
	next := ""
	if more && len(out) > 0 {
		next = strconv.FormatUint(out[len(out)-1].Seq, 10)
	}
	return out, next, err
}
