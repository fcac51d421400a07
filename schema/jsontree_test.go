package schema

import (
	"errors"
	"testing"
)

// TestDuplicateKeyPath: a key given twice is named by its whole path, list
// indexes included.
func TestDuplicateKeyPath(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{`{"kind":"Policy","kind":"Policy"}`, "kind: duplicate key"},
		{`{"a":{"b":[1,{"c":1,"c":2}]}}`, "a.b[1].c: duplicate key"},
		{`[{"x":1},{"y":[{"z":1,"z":1}]}]`, "[1].y[0].z: duplicate key"},
		{`{"spec":{"filters":{"users":["a"],"users":["b"]}}}`, "spec.filters.users: duplicate key"},
	} {
		_, err := jsonTree([]byte(c.doc))
		if err == nil || err.Error() != c.want || !errors.Is(err, errDuplicateKey) {
			t.Errorf("%s: got %v, want %s", c.doc, err, c.want)
		}
	}
}
