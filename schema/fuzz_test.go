package schema

import (
	"encoding/json"
	"errors"
	"regexp"
	"testing"
)

var idRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// FuzzValidate: Validate never panics, every error is an Errors naming the
// file, and every accepted document is well-formed: a known kind, an id of
// the right shape, a typed spec that survives Restore. The seed corpus is
// in testdata/fuzz/FuzzValidate (the DESIGN.md examples, the fixtures and
// broken variants of them).
func FuzzValidate(f *testing.F) {
	for _, d := range designExamples {
		f.Add([]byte(d))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Validate("fuzz.json", data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %T %v is not Errors", err, err)
			}
			for _, is := range errs {
				if is.File != "fuzz.json" || is.Msg == "" {
					t.Fatalf("issue %#v lacks file or rule", is)
				}
			}
			return
		}
		if _, err := newSpec(d.Kind); err != nil || d.Spec == nil {
			t.Fatalf("accepted kind %q with spec %T", d.Kind, d.Spec)
		}
		if !idRe.MatchString(d.ID) || (d.Kind == KindSettings && d.ID != "agent") {
			t.Fatalf("accepted %s with id %q", d.Kind, d.ID)
		}
		if string(d.Raw) != string(data) {
			t.Fatal("Raw differs from the input")
		}
		spec, err := json.Marshal(d.Spec)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Restore(d.Kind, d.ID, d.Raw, spec)
		if err != nil || r.Key() != d.Key() {
			t.Fatalf("Restore: %v, %v", r, err)
		}
	})
}
