package schema

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

// MaxValues is the most JSON values (objects, arrays, strings, numbers,
// booleans, nulls) one document may hold. CUE's evaluator costs time that
// grows faster than linearly with the size of one list or struct and with
// the number of errors, so a document within MaxDocumentSize could still
// take minutes; this bound keeps the worst document to a fraction of a
// second. A policy listing 4,000 applications stays well inside it.
const MaxValues = 10_000

// ErrTooManyValues is the rule broken by a document holding more than
// MaxValues values.
var ErrTooManyValues = fmt.Errorf("document holds more than %d values", MaxValues)

// errDuplicateKey is wrapped with the key's path.
var errDuplicateKey = errors.New("duplicate key")

// jsonTree parses data, which precheck accepted, into plain Go values that
// cue.Context.Encode turns into a CUE value: maps, slices, strings, bools,
// nil, int64 or *big.Int for integer literals and *big.Float for the rest.
//
// It replaces encoding/json.Extract + BuildExpr (an AST, then a compile)
// with one walk, which is about four times cheaper, and it is as strict:
// integer and float literals keep their kinds, and a key given twice in
// one object is an error instead of last-one-wins. The input is only ever
// data: nothing is evaluated.
func jsonTree(data []byte) (any, error) {
	if !gjson.ValidBytes(data) {
		return nil, errors.New("not valid JSON")
	}
	t := treeBuilder{}
	v, err := t.value(gjson.ParseBytes(data))
	var dup *dupKey
	if errors.As(err, &dup) {
		return nil, fmt.Errorf("%s: %w", dup.path(), errDuplicateKey)
	}
	if err != nil {
		return nil, err
	}
	return v, nil
}

type treeBuilder struct {
	n int // values built so far
}

// dupKey is a key given twice. Its path is collected while the error
// unwinds, innermost first, so that a document without one builds no path
// strings.
type dupKey struct{ rev []string }

func (d *dupKey) Error() string { return d.path() + ": duplicate key" }

// path is the dotted path, with [i] for list elements: spec.filters.users.
func (d *dupKey) path() string {
	var b strings.Builder
	for i := len(d.rev) - 1; i >= 0; i-- {
		if b.Len() > 0 && !strings.HasPrefix(d.rev[i], "[") {
			b.WriteByte('.')
		}
		b.WriteString(d.rev[i])
	}
	return b.String()
}

// within adds elem (a key, or [i]) to the path of a dupKey err.
func within(err error, elem func() string) error {
	if d, ok := err.(*dupKey); ok {
		d.rev = append(d.rev, elem())
	}
	return err
}

func (t *treeBuilder) value(r gjson.Result) (any, error) {
	if t.n++; t.n > MaxValues {
		return nil, ErrTooManyValues
	}
	switch r.Type {
	case gjson.Null:
		return nil, nil
	case gjson.False:
		return false, nil
	case gjson.True:
		return true, nil
	case gjson.String:
		return r.Str, nil
	case gjson.Number:
		return number(r.Raw)
	}
	if r.IsArray() {
		return t.array(r)
	}
	return t.object(r)
}

func (t *treeBuilder) array(r gjson.Result) (any, error) {
	out := []any{}
	var err error
	r.ForEach(func(_, v gjson.Result) bool {
		var x any
		if x, err = t.value(v); err != nil {
			i := len(out)
			err = within(err, func() string { return "[" + strconv.Itoa(i) + "]" })
			return false
		}
		out = append(out, x)
		return true
	})
	return out, err
}

func (t *treeBuilder) object(r gjson.Result) (any, error) {
	out := map[string]any{}
	var err error
	r.ForEach(func(k, v gjson.Result) bool {
		if _, dup := out[k.Str]; dup {
			err = &dupKey{rev: []string{k.Str}}
			return false
		}
		var x any
		if x, err = t.value(v); err != nil {
			err = within(err, func() string { return k.Str })
			return false
		}
		out[k.Str] = x
		return true
	})
	return out, err
}

// number keeps a JSON number's kind as CUE's JSON decoder does: a literal
// without fraction or exponent is an int (of any size), anything else a
// float.
func number(raw string) (any, error) {
	if !strings.ContainsAny(raw, ".eE") {
		if n, err := strconv.ParseInt(raw, 10, 64); err == nil {
			return n, nil
		}
		n, ok := new(big.Int).SetString(raw, 10)
		if !ok {
			return nil, fmt.Errorf("invalid number %s", raw)
		}
		return n, nil
	}
	f, _, err := big.ParseFloat(raw, 10, 128, big.ToNearestEven)
	if err != nil {
		return nil, fmt.Errorf("invalid number %s", raw)
	}
	return f, nil
}
