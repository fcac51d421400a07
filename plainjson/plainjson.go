// Package plainjson scans the plainest JSON in one pass, without a JSON
// library: objects, arrays, strings of printable ASCII without escapes,
// true and false, and integers of at most 18 digits, with JSON white space
// between tokens. It is for fast paths that stand in front of a full
// decoder: anything else (an escape, a byte outside printable ASCII, null,
// a fraction, bad syntax) makes a method report false, and the caller
// decodes with the full decoder, whose answers and errors stand.
//
// A Scanner reads a string or a []byte in place: the strings it returns
// are slices of its input.
package plainjson

import "strconv"

// Scanner reads src from its start.
type Scanner[T ~string | ~[]byte] struct {
	src T
	i   int
}

// New returns a Scanner at the start of src.
func New[T ~string | ~[]byte](src T) *Scanner[T] { return &Scanner[T]{src: src} }

// Space skips JSON white space.
func (s *Scanner[T]) Space() {
	for s.i < len(s.src) {
		switch s.src[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// Next skips white space and consumes c if it comes next.
func (s *Scanner[T]) Next(c byte) bool {
	s.Space()
	if s.i < len(s.src) && s.src[s.i] == c {
		s.i++
		return true
	}
	return false
}

// End skips white space and reports whether the input ends there.
func (s *Scanner[T]) End() bool {
	s.Space()
	return s.i == len(s.src)
}

// Object reads {"key": value, ...}, calling field for each key with the
// scanner at its value; field reads the value.
func (s *Scanner[T]) Object(field func(key T) bool) bool {
	if !s.Next('{') {
		return false
	}
	if s.Next('}') {
		return true
	}
	for {
		key, ok := s.Str()
		if !ok || !s.Next(':') || !field(key) {
			return false
		}
		if s.Next('}') {
			return true
		}
		if !s.Next(',') {
			return false
		}
	}
}

// Array reads [value, ...], calling elem with the scanner at each value;
// elem reads the value.
func (s *Scanner[T]) Array(elem func() bool) bool {
	if !s.Next('[') {
		return false
	}
	if s.Next(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if s.Next(']') {
			return true
		}
		if !s.Next(',') {
			return false
		}
	}
}

// Str reads a string of printable ASCII without escapes, in place.
func (s *Scanner[T]) Str() (T, bool) {
	var zero T
	if !s.Next('"') {
		return zero, false
	}
	start := s.i
	for ; s.i < len(s.src); s.i++ {
		switch c := s.src[s.i]; {
		case c == '"':
			s.i++
			return s.src[start : s.i-1], true
		case c < 0x20 || c > 0x7e || c == '\\':
			return zero, false
		}
	}
	return zero, false
}

// Bool reads true or false.
func (s *Scanner[T]) Bool(b *bool) bool {
	s.Space()
	rest := s.src[s.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		*b, s.i = true, s.i+4
	case len(rest) >= 5 && string(rest[:5]) == "false":
		*b, s.i = false, s.i+5
	default:
		return false
	}
	return s.delimited()
}

// Int reads -?(0|[1-9][0-9]*) of at most 18 digits (so it fits an int64;
// no fraction, no exponent).
func (s *Scanner[T]) Int(n *int64) bool {
	s.Space()
	start := s.i
	if s.i < len(s.src) && s.src[s.i] == '-' {
		s.i++
	}
	digits := s.i
	for s.i < len(s.src) && '0' <= s.src[s.i] && s.src[s.i] <= '9' {
		s.i++
	}
	if nd := s.i - digits; nd == 0 || nd > 18 || (nd > 1 && s.src[digits] == '0') || !s.delimited() {
		return false
	}
	v, err := strconv.ParseInt(string(s.src[start:s.i]), 10, 64)
	*n = v
	return err == nil
}

// delimited reports whether a literal ends here (white space, a comma,
// the end of an object or array, the end of the input): "truex" or "12a"
// is not a value.
func (s *Scanner[T]) delimited() bool {
	if s.i == len(s.src) {
		return true
	}
	switch s.src[s.i] {
	case ' ', '\t', '\n', '\r', ',', '}', ']':
		return true
	}
	return false
}
