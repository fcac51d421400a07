package engine_test

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"warden/audit"
	"warden/policy"
	"warden/state"
)

// secretOf is the TOTP secret of an otpauth URI.
func secretOf(t *testing.T, uri string) []byte {
	t.Helper()
	u, err := url.Parse(uri)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := policy.ParseTOTPSecret(u.Query().Get("secret"))
	if err != nil {
		t.Fatal(err)
	}
	return secret
}

// wrongCode is a 6-digit code that is not valid for secret around at.
func wrongCode(secret []byte, at time.Time) string {
	for _, c := range []string{"000000", "111111", "222222", "333333"} {
		if _, ok := policy.VerifyTOTP(secret, c, at); !ok {
			return c
		}
	}
	panic("unreachable")
}

// events are the stored audit events of typ, oldest first.
func (f *fixture) events(t *testing.T, typ string) []audit.Event {
	t.Helper()
	evs, _, err := audit.Query(f.store, audit.Filter{Types: []string{typ}, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// last is the newest stored audit event of typ.
// grantedIDs counts the grants ELEVATION_GRANTED events name (a renewal
// names its grant again).
func (f *fixture) grantedIDs(t *testing.T) int {
	t.Helper()
	ids := map[string]bool{}
	for _, ev := range f.events(t, audit.ElevationGranted) {
		ids[ev.TargetInfo.ID] = true
	}
	return len(ids)
}

func (f *fixture) last(t *testing.T, typ string) audit.Event {
	t.Helper()
	evs := f.events(t, typ)
	if len(evs) == 0 {
		t.Fatalf("no %s event", typ)
	}
	return evs[len(evs)-1]
}

// storedGrants are the grant records in the store, as reconcile sees them.
func (f *fixture) storedGrants(t *testing.T) []state.Grant {
	t.Helper()
	var gs []state.Grant
	err := f.store.List(state.Grants, func(_ string, v json.RawMessage) error {
		var g state.Grant
		if err := json.Unmarshal(v, &g); err != nil {
			return err
		}
		gs = append(gs, g)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return gs
}
