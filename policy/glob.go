package policy

import (
	"fmt"
	"math/bits"
	"strings"
	"unicode/utf8"
)

// Glob syntax, the same in every filter:
//
//	?    one character (in paths: not /)
//	*    any run of characters (in paths: within one path element)
//	**   any run of characters, / included
//	**/  at the start of a path element: zero or more whole elements
//	${USER} ${HOME} ${MACHINE}  the request's user, home and machine
//
// There is no escaping and no [class]; matching is exact about case. A
// variable is substituted as a literal, so a user named "a*" matches only
// "a*". Matching runs a position-set automaton: linear in the text times
// the pattern, never exponential, and allocation-free for patterns of up to
// 256 characters after substitution.

// variables a pattern can name.
const (
	varUser = iota + 1
	varHome
	varMachine
)

var varNames = map[string]uint8{"USER": varUser, "HOME": varHome, "MACHINE": varMachine}

// ops of the automaton: one instruction per pattern character (two for **/).
const (
	opRune     uint8 = iota // r
	opAny1                  // ?
	opStar                  // * in a path: any run without /
	opAny                   // ** (or * outside paths): any run
	opDirs                  // **/ in a path: "" (skip the loop) or the loop
	opDirsLoop              // the loop of **/: any run ending in /
	opVar                   // placeholder, expanded per request
)

type inst struct {
	op uint8
	v  uint8 // variable for opVar
	r  rune
}

// how a pattern can be decided without running the automaton.
const (
	shapeGeneral = iota
	shapeExact   // no wildcard, no variable: equality
	shapePrefix  // literal then one trailing * or **
)

// glob is a compiled pattern.
type glob struct {
	src    string
	path   bool   // path semantics: * and ? stop at /
	prefix string // literal text before the first wildcard or variable
	shape  uint8
	vars   bool
	prog   []inst // the whole pattern
}

// vars are the request values variables expand to. HOME is /home/<user>,
// or /root for root; it is kept as two pieces so expanding allocates
// nothing.
type vars struct {
	user, machine string
}

func (v vars) value(which uint8) (string, string) {
	switch which {
	case varUser:
		return v.user, ""
	case varHome:
		if v.user == "root" {
			return "/root", ""
		}
		return "/home/", v.user
	case varMachine:
		return v.machine, ""
	}
	return "", ""
}

// compileGlob parses pattern. path selects path semantics for * and ?.
func compileGlob(pattern string, path bool) (*glob, error) {
	g := &glob{src: pattern, path: path}
	literal := true
	var prefix strings.Builder
	for i := 0; i < len(pattern); {
		c := pattern[i]
		switch {
		case c == '*':
			literal = false
			n := 1
			for i+n < len(pattern) && pattern[i+n] == '*' {
				n++
			}
			switch {
			case !path:
				g.prog = append(g.prog, inst{op: opAny})
			case n == 1:
				g.prog = append(g.prog, inst{op: opStar})
			case i+n < len(pattern) && pattern[i+n] == '/' && (i == 0 || pattern[i-1] == '/'):
				g.prog = append(g.prog, inst{op: opDirs}, inst{op: opDirsLoop})
				n++ // the / belongs to **/
			default:
				g.prog = append(g.prog, inst{op: opAny})
			}
			i += n
		case c == '?':
			literal = false
			g.prog = append(g.prog, inst{op: opAny1})
			i++
		case c == '$' && i+1 < len(pattern) && pattern[i+1] == '{':
			end := strings.IndexByte(pattern[i:], '}')
			if end < 0 {
				return nil, fmt.Errorf("pattern %q: unterminated ${", pattern)
			}
			name := pattern[i+2 : i+end]
			v, ok := varNames[name]
			if !ok {
				return nil, fmt.Errorf("pattern %q: unknown variable ${%s} (known: ${USER}, ${HOME}, ${MACHINE})", pattern, name)
			}
			literal = false
			g.vars = true
			g.prog = append(g.prog, inst{op: opVar, v: v})
			i += end + 1
		default:
			r, n := utf8.DecodeRuneInString(pattern[i:])
			if literal {
				prefix.WriteString(pattern[i : i+n])
			}
			g.prog = append(g.prog, inst{op: opRune, r: r})
			i += n
		}
	}
	g.prefix = prefix.String()
	pl := utf8.RuneCountInString(g.prefix)
	switch {
	case pl == len(g.prog):
		g.shape = shapeExact
	case pl == len(g.prog)-1 && (g.prog[pl].op == opStar || g.prog[pl].op == opAny):
		g.shape = shapePrefix
	}
	return g, nil
}

// match reports whether s matches the pattern with variables from v.
func (g *glob) match(s string, v vars) bool {
	if !strings.HasPrefix(s, g.prefix) {
		return false
	}
	switch g.shape {
	case shapeExact:
		return len(s) == len(g.prefix)
	case shapePrefix:
		return g.prog[len(g.prog)-1].op == opAny || strings.IndexByte(s[len(g.prefix):], '/') < 0
	}
	rest := s[len(g.prefix):]
	prog := g.prog[utf8.RuneCountInString(g.prefix):]
	if !g.vars {
		return run(prog, rest, g.path)
	}
	var buf [256]inst
	exp := buf[:0]
	for _, in := range prog {
		if in.op != opVar {
			exp = append(exp, in)
			continue
		}
		a, b := v.value(in.v)
		for _, part := range [2]string{a, b} {
			for _, r := range part {
				exp = append(exp, inst{op: opRune, r: r})
			}
		}
	}
	return run(exp, rest, g.path)
}

// run simulates the automaton of prog over s: the set of live positions is
// a bitset, advanced one rune at a time.
func run(prog []inst, s string, path bool) bool {
	n := len(prog)
	if n < 256 {
		var cur, next [4]uint64
		return simulate(prog, s, path, cur[:], next[:])
	}
	words := n/64 + 1
	return simulate(prog, s, path, make([]uint64, words), make([]uint64, words))
}

func simulate(prog []inst, s string, path bool, cur, next []uint64) bool {
	n := len(prog)
	set(cur, 0)
	closure(prog, cur)
	for _, c := range s {
		clear(next)
		live := false
		for w, word := range cur {
			for word != 0 {
				bit := w<<6 + bits.TrailingZeros64(word)
				word &= word - 1
				if bit >= n {
					continue
				}
				live = true
				in := prog[bit]
				switch in.op {
				case opRune:
					if in.r == c {
						set(next, bit+1)
					}
				case opAny1:
					if !path || c != '/' {
						set(next, bit+1)
					}
				case opStar:
					if c != '/' {
						set(next, bit)
					}
				case opAny:
					set(next, bit)
				case opDirsLoop:
					set(next, bit)
					if c == '/' {
						set(next, bit+1)
					}
				}
			}
		}
		if !live {
			return false
		}
		closure(prog, next)
		cur, next = next, cur
	}
	return has(cur, n)
}

func set(b []uint64, i int)      { b[i>>6] |= 1 << (i & 63) }
func has(b []uint64, i int) bool { return b[i>>6]&(1<<(i&63)) != 0 }

// closure adds the positions reachable without input: past a star, and
// into or past the loop of **/. Such moves only go forward, so one
// ascending pass reaches them all.
func closure(prog []inst, b []uint64) {
	for i := range prog {
		switch prog[i].op {
		case opStar, opAny:
			if has(b, i) {
				set(b, i+1)
			}
		case opDirs:
			if has(b, i) {
				set(b, i+1)
				set(b, i+2)
			}
		}
	}
}
