package plainjson

import "testing"

// What the scanner takes and what it leaves to the full decoder, on both
// kinds of input.
func TestScanner(t *testing.T) {
	read := func(src string) bool {
		s := New(src)
		ok := s.Object(func(key string) bool {
			switch key {
			case "s":
				_, ok := s.Str()
				return ok
			case "n":
				var n int64
				return s.Int(&n)
			case "b":
				var b bool
				return s.Bool(&b)
			case "l":
				return s.Array(func() bool { _, ok := s.Str(); return ok })
			}
			return false
		})
		return ok && s.End()
	}
	for src, want := range map[string]bool{
		`{}`: true,
		` { "s" : "a b" , "n": -12, "b": false } `:   true,
		`{"l": [], "n": 0}`:                          true,
		`{"l": ["a", "b"], "n": 123456789012345678}`: true,
		`{"n": 1234567890123456789}`:                 false, // 19 digits
		`{"n": 012}`:                                 false,
		`{"n": 1.5}`:                                 false,
		`{"n": 1e3}`:                                 false,
		`{"b": truex}`:                               false,
		`{"b": null}`:                                false,
		`{"s": "a\"b"}`:                              false, // an escape
		`{"s": "é"}`:                                 false,
		"{\"s\": \"a\tb\"}":                          false,
		`{"s": "a",}`:                                false,
		`{"l": ["a",]}`:                              false,
		`{"x": 1}`:                                   false,
		`{"s": "a"} x`:                               false,
		`{"s": "a"`:                                  false,
	} {
		if got := read(src); got != want {
			t.Errorf("%s: read = %v, want %v", src, got, want)
		}
		s := New([]byte(src))
		if _, ok := s.Str(); ok && src[0] == '{' {
			t.Errorf("%s: a []byte scanner read an object as a string", src)
		}
	}
	s := New([]byte(` "in place" `))
	if got, ok := s.Str(); !ok || string(got) != "in place" || !s.End() {
		t.Errorf("[]byte Str = %q, %v", got, ok)
	}
}
