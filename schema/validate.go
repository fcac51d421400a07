// Package schema holds the CUE schemas of warden's desired-state documents
// (one file per kind, embedded), the Go types they decode into, and Validate,
// the one way a document becomes trusted input.
package schema

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	"github.com/tidwall/gjson"
)

//go:embed *.cue
var cueFiles embed.FS

// MaxDocumentSize is the largest document Validate parses; larger ones are
// refused before parsing.
const MaxDocumentSize = 1 << 20

// MaxDepth is the deepest nesting of objects and arrays a document may have.
// The schemas need six levels; anything far deeper is hostile.
const MaxDepth = 64

// ErrTooLarge, ErrTooDeep and ErrNotUTF8 are the rules broken by input
// refused before parsing.
var (
	ErrTooLarge = fmt.Errorf("document larger than %d bytes", MaxDocumentSize)
	ErrTooDeep  = fmt.Errorf("document nested deeper than %d levels", MaxDepth)
	ErrNotUTF8  = errors.New("document is not valid UTF-8 (JSON is text)")
)

// Issue is one broken rule: the file, the field path within the document
// (dotted, empty for the whole document) and the rule.
type Issue struct {
	File string
	Path string
	Msg  string
}

func (i Issue) String() string {
	if i.Path == "" {
		return i.File + ": " + i.Msg
	}
	return i.File + ": " + i.Path + ": " + i.Msg
}

// Errors is every rule a document broke. It is the error type of Validate.
type Errors []Issue

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, is := range e {
		lines[i] = is.String()
	}
	return strings.Join(lines, "\n")
}

// Source returns the schemas as one CUE file, for `cue vet` and for
// `warden schema export`.
func Source() []byte {
	var b bytes.Buffer
	b.WriteString("// warden desired-state schemas. Check a document with:\n")
	b.WriteString("//   cue vet warden.cue doc.json -d '#Policy'\n")
	b.WriteString("package schema\n")
	// One file: the package clauses go, and the imports (one-line import
	// declarations of CUE's standard packages) move to the top.
	var imports []string
	var body bytes.Buffer
	names, _ := fs.Glob(cueFiles, "*.cue")
	sort.Strings(names)
	for _, n := range names {
		data, _ := cueFiles.ReadFile(n)
		fmt.Fprintf(&body, "\n// ---- %s\n", n)
		for _, line := range strings.SplitAfter(string(data), "\n") {
			switch {
			case strings.HasPrefix(line, "package "):
			case strings.HasPrefix(line, "import "):
				if !slices.Contains(imports, line) {
					imports = append(imports, line)
				}
			default:
				body.WriteString(line)
			}
		}
	}
	if len(imports) > 0 {
		b.WriteString("\n")
		for _, line := range imports {
			b.WriteString(line)
		}
	}
	b.Write(body.Bytes())
	return b.Bytes()
}

// validator owns one cue.Context and the schemas compiled in it. A
// cue.Context and the values built in it must not be used by two goroutines
// at once, so each goroutine borrows a whole validator.
type validator struct {
	ctx   *cue.Context
	defs  map[string]cue.Value
	lists map[string]cue.Value // [...#Kind], for validateBatch
	manif cue.Value
}

func newValidator() *validator {
	ctx := cuecontext.New()
	root := ctx.CompileBytes(Source(), cue.Filename("warden.cue"))
	if err := root.Err(); err != nil {
		panic("schema: embedded CUE does not compile: " + err.Error())
	}
	v := &validator{ctx: ctx, defs: map[string]cue.Value{}, lists: map[string]cue.Value{}}
	for _, k := range Kinds {
		v.defs[k] = root.LookupPath(cue.ParsePath("#" + k))
		v.lists[k] = ctx.CompileString("[...#"+k+"]", cue.Scope(root))
	}
	v.manif = root.LookupPath(cue.ParsePath("#Manifest"))
	return v
}

var (
	poolOnce sync.Once
	pool     chan *validator
)

// borrow takes a validator, compiling a new one while fewer than GOMAXPROCS
// exist. Compilation happens once per validator, never per document.
func borrow() *validator {
	poolOnce.Do(func() {
		n := runtime.GOMAXPROCS(0)
		pool = make(chan *validator, n)
		for i := 0; i < n; i++ {
			pool <- nil
		}
	})
	v := <-pool
	if v == nil {
		v = newValidator()
	}
	return v
}

func giveBack(v *validator) { pool <- v }

// evaluations counts documents that reached CUE (cache misses), so tests
// can tell a cached answer from a fresh one.
var evaluations atomic.Int64

// Validate checks one document against the schema of its kind and returns
// it typed, with defaults filled in. name is used in error messages (the
// file the document came from). The error, if any, is of type Errors and
// lists every broken rule. Validate is safe for concurrent use; a document
// whose bytes were validated before is served from a cache.
func Validate(name string, data []byte) (*Document, error) {
	return validate(name, data, sha256.Sum256(data))
}

// validate is Validate of data whose SHA-256 is sum.
func validate(name string, data []byte, sum [32]byte) (*Document, error) {
	if d := cache.get(sum); d != nil {
		return d, nil
	}
	p, err := parse(name, data)
	if err != nil {
		return nil, err
	}
	evaluations.Add(1)
	v := borrow()
	defer giveBack(v)
	return v.validateOne(name, data, sum, p)
}

// parsed is a document that parses as JSON and names a known kind: what
// reaches CUE.
type parsed struct {
	kind, id string
	tree     any
}

// parse reads data as JSON (precheck, jsonTree) and finds its kind; its
// errors are Validate's for input that never reaches CUE.
func parse(name string, data []byte) (parsed, error) {
	if err := precheck(data); err != nil {
		return parsed{}, Errors{{File: name, Msg: err.Error()}}
	}
	tree, err := jsonTree(data)
	if err != nil {
		return parsed{}, Errors{{File: name, Msg: jsonError(data, err)}}
	}
	obj, _ := tree.(map[string]any)
	kind, hasKind := obj["kind"]
	def := ""
	for _, k := range Kinds {
		if kind == k {
			def = k
		}
	}
	if def == "" {
		return parsed{}, Errors{{File: name, Path: "kind", Msg: fmt.Sprintf("invalid value %s (must be one of %s)", kindText(kind, hasKind), strings.Join(Kinds, ", "))}}
	}
	id, _ := obj["id"].(string)
	return parsed{kind: def, id: id, tree: tree}, nil
}

// validateOne checks one parsed document against the schema of its kind.
func (v *validator) validateOne(name string, data []byte, sum [32]byte, p parsed) (*Document, error) {
	val, err := v.unify(name, p.tree, v.defs[p.kind])
	if err != nil {
		return nil, err
	}
	return accept(name, data, sum, p, val)
}

// accept finishes a document that CUE accepted as val: its typed spec,
// the rules checked in Go, and the cache.
func accept(name string, data []byte, sum [32]byte, p parsed, val cue.Value) (*Document, error) {
	d := &Document{Kind: p.kind, ID: p.id, Raw: append(json.RawMessage(nil), data...), Hash: sum}
	var err error
	if d.Spec, err = decodeSpec(p.kind, data, val); err != nil {
		return nil, Errors{{File: name, Path: "spec", Msg: err.Error()}}
	}
	if j := d.Job(); j != nil {
		if errs := checkJob(name, j); errs != nil {
			return nil, errs
		}
	}
	if p := d.Policy(); p != nil {
		if errs := checkPolicy(name, p); errs != nil {
			return nil, errs
		}
	}
	if a := d.Approver(); a != nil && len(a.Users) == 0 && len(a.Groups) == 0 {
		return nil, Errors{{File: name, Path: "spec.users", Msg: "empty, and no spec.groups: an Approver names at least one user or group"}}
	}
	cache.put(sum, d)
	return d, nil
}

// ValidateManifest checks a bundle's manifest.json.
func ValidateManifest(name string, data []byte) (*Manifest, error) {
	if err := precheck(data); err != nil {
		return nil, Errors{{File: name, Msg: err.Error()}}
	}
	tree, err := jsonTree(data)
	if err != nil {
		return nil, Errors{{File: name, Msg: jsonError(data, err)}}
	}
	v := borrow()
	defer giveBack(v)
	val, err := v.unify(name, tree, v.manif)
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := val.Decode(&m); err != nil {
		return nil, Errors{{File: name, Msg: err.Error()}}
	}
	return &m, nil
}

// unify checks a document, parsed by jsonTree (as JSON, never as CUE:
// untrusted input is not evaluated), against def.
func (v *validator) unify(name string, tree any, def cue.Value) (cue.Value, error) {
	val := def.Unify(v.ctx.Encode(tree))
	if err := val.Validate(cue.Concrete(true)); err != nil {
		return cue.Value{}, issues(name, err)
	}
	return val, nil
}

var (
	conflictRe = regexp.MustCompile(`^conflicting values ("(?:[^"\\]|\\.)*") and ("(?:[^"\\]|\\.)*")$`)
	longBound  = regexp.MustCompile(`\(out of bound =~".{60,}"\)$`)
	// enumBound is an enum written as an anchored alternation,
	// =~"^(a|b|c)$" (policy.cue says why), as CUE reports a value outside
	// it or a missing one.
	enumBound  = regexp.MustCompile(`=~"\^\(([A-Za-z0-9-]+(?:\|[A-Za-z0-9-]+)+)\)\$"`)
	enumTypeRe = regexp.MustCompile(`^conflicting values (.+) and ` + enumBound.String() + ` \(mismatched types \w+ and string\)$`)
)

// enumWords reads the alternatives of an enumBound match: quoted, joined
// by sep, sorted when sorted is true (as CUE lists a failed disjunction's
// values), else in the order written (as CUE shows a missing one).
func enumWords(alts, sep string, sorted bool) string {
	words := strings.Split(alts, "|")
	if sorted {
		sort.Strings(words)
	}
	for i, w := range words {
		words[i] = strconv.Quote(w)
	}
	return strings.Join(words, sep)
}

// issues turns CUE's errors into one Issue per broken rule, in words an
// operator can act on: a failed enum lists its allowed values, a missing
// field says it is required.
func issues(name string, err error) Errors {
	var out Errors
	seen := map[string]bool{}
	disj := map[string]int{} // path -> index in out of its disjunction issue
	enum := map[int]bool{}   // index in out -> the disjunction is an enum of strings
	for _, e := range cueerrors.Errors(err) {
		format, args := e.Msg()
		is := Issue{File: name, Path: pathString(e.Path()), Msg: fmt.Sprintf(format, args...)}
		switch {
		case is.Msg == "field not allowed":
			is.Msg = "field not allowed (unknown field)"
		case is.Msg == "field is required but not present":
			is.Msg = "required field is missing"
		case strings.HasPrefix(is.Msg, "incomplete value") && strings.HasSuffix(is.Path, "[0]"):
			// A missing list that needs an element: CUE names its first.
			is.Path = strings.TrimSuffix(is.Path, "[0]")
			want := strings.TrimPrefix(is.Msg, "incomplete value ")
			if m := enumBound.FindStringSubmatch(want); m != nil && m[0] == want {
				want = enumWords(m[1], " | ", false)
			}
			is.Msg = "required field is missing (a list of at least one " + want + ")"
		case strings.HasPrefix(is.Msg, "invalid value ") && enumBound.MatchString(is.Msg) && strings.HasSuffix(is.Msg, `$")`):
			m := enumBound.FindStringSubmatch(is.Msg)
			is.Msg = is.Msg[:strings.Index(is.Msg, " (out of bound ")] + " (must be one of " + enumWords(m[1], ", ", true) // ")" below
		case enumTypeRe.MatchString(is.Msg): // not a string at all
			m := enumTypeRe.FindStringSubmatch(is.Msg)
			is.Msg = "invalid value " + m[1] + " (must be one of " + enumWords(m[2], ", ", true)
		case strings.HasPrefix(is.Msg, "incomplete value"):
			is.Msg = "required field is missing (" + is.Msg + ")"
		case strings.Contains(is.Msg, "errors in empty disjunction"):
			disj[is.Path] = len(out)
			is.Msg = ""
			out = append(out, is)
			continue
		case strings.HasSuffix(is.Path, "certificate.password"):
			is.Msg = "must not be set (a key is protected by its file mode, never by a password kept beside it)"
		case strings.HasSuffix(is.Msg, "(does not satisfy time.Time)"):
			is.Msg = strings.TrimSuffix(is.Msg, "(does not satisfy time.Time)") + "(not an RFC 3339 time)"
		case strings.HasPrefix(is.Msg, "incompatible list lengths (0 and"):
			is.Msg = "must not be empty"
		case longBound.MatchString(is.Msg):
			is.Msg = longBound.ReplaceAllString(is.Msg, "(does not match the "+ruleName(is.Path)+" pattern)")
		}
		if i, ok := disj[is.Path]; ok {
			m := conflictRe.FindStringSubmatch(is.Msg)
			switch {
			case m != nil && out[i].Msg == "":
				out[i].Msg = "invalid value " + m[2] + " (must be one of " + m[1]
				enum[i] = true
			case m != nil && enum[i]:
				out[i].Msg += ", " + m[1]
			case m == nil && !enum[i] && informative(is.Msg) > informative(out[i].Msg):
				// Not an enum of strings but a default and a typed
				// alternative (*0 | int & >=0 & <=10000): one error, the
				// one that says most ("out of bound <=10000" rather than
				// "conflicting values 0 and 20000").
				out[i].Msg = is.Msg
			}
			continue
		}
		if k := is.String(); !seen[k] {
			seen[k] = true
			out = append(out, is)
		}
	}
	for i := range out {
		if strings.HasPrefix(out[i].Msg, "invalid value ") && strings.Contains(out[i].Msg, "(must be one of") {
			out[i].Msg += ")"
		} else if out[i].Msg == "" {
			out[i].Msg = "invalid value"
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// informative ranks an alternative's error message: a broken bound or a
// wrong type says more than a clash with the default value.
func informative(msg string) int {
	switch {
	case msg == "":
		return 0
	case strings.HasPrefix(msg, "invalid value"):
		return 3
	case strings.Contains(msg, "mismatched types"):
		return 2
	}
	return 1
}

func ruleName(path string) string {
	if strings.HasSuffix(path, "schedule") {
		return "5-field cron"
	}
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[i+1:]
	}
	return path
}

func pathString(p []string) string {
	var parts []string
	for _, s := range p {
		if strings.HasPrefix(s, "#") {
			continue
		}
		if len(parts) > 0 && strings.HasPrefix(s, "[") {
			parts[len(parts)-1] += s
			continue
		}
		if _, err := fmt.Sscanf(s, "%d", new(int)); err == nil && len(parts) > 0 {
			parts[len(parts)-1] += "[" + s + "]"
			continue
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ".")
}

// jsonError words a parse failure. gjson only says "invalid", so for
// broken JSON encoding/json is asked where it broke.
func jsonError(data []byte, err error) string {
	if errors.Is(err, ErrTooManyValues) || errors.Is(err, errDuplicateKey) {
		return err.Error()
	}
	var x any
	jerr := json.Unmarshal(data, &x)
	var syn *json.SyntaxError
	if errors.As(jerr, &syn) {
		return fmt.Sprintf("not valid JSON: %s (at byte %d)", syn.Error(), syn.Offset)
	}
	if jerr != nil {
		return "not valid JSON: " + jerr.Error()
	}
	return err.Error()
}

func kindText(k any, ok bool) string {
	if !ok {
		return "(missing)"
	}
	b, _ := json.Marshal(k)
	return string(b)
}

func decodeSpec(kind string, data []byte, val cue.Value) (any, error) {
	spec, err := newSpec(kind)
	if err != nil {
		return nil, err
	}
	if kind == KindPolicy || kind == KindApprover {
		// Their schemas give defaults only where Go's zero value means the
		// same, so the JSON of a document CUE accepted decodes into the
		// same spec as CUE's Decode, in a fraction of the time (policies
		// are most of a large bundle). FuzzSpecDecodeAgrees and
		// TestSpecDecodeAgrees hold the two decoders together.
		if err := json.Unmarshal([]byte(gjson.GetBytes(data, "spec").Raw), spec); err != nil {
			return nil, err
		}
		if p, ok := spec.(*PolicySpec); ok && p.LeastPrivilege != nil && p.LeastPrivilege.StandingAdmins == nil {
			p.LeastPrivilege.StandingAdmins = []string{} // the schema's default, *[]
		}
		return spec, nil
	}
	return spec, val.LookupPath(cue.ParsePath("spec")).Decode(spec)
}

func newSpec(kind string) (any, error) {
	switch kind {
	case KindPolicy:
		return new(PolicySpec), nil
	case KindApprover:
		return new(ApproverSpec), nil
	case KindPlugin:
		return new(PluginSpec), nil
	case KindJob:
		return new(JobSpec), nil
	case KindSettings:
		return new(SettingsSpec), nil
	}
	return nil, errors.New("unknown kind " + kind)
}

// precheck refuses input that must not reach the parser: too large, or
// nested deep enough to cost stack and time.
func precheck(data []byte) error {
	if len(data) > MaxDocumentSize {
		return ErrTooLarge
	}
	if !utf8.Valid(data) {
		return ErrNotUTF8
	}
	depth, inStr, esc := 0, false, false
	for _, c := range data {
		switch {
		case esc:
			esc = false
		case inStr:
			if c == '\\' {
				esc = true
			} else if c == '"' {
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			if depth++; depth > MaxDepth {
				return ErrTooDeep
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// Restore rebuilds a Document that Validate accepted earlier, from the
// bytes it was received as and its spec as Validate decoded it (Spec,
// marshalled as JSON). It trusts its input, which must come from the
// encrypted, authenticated store, and costs a JSON decode instead of a CUE
// evaluation: an agent with 10,000 documents starts in well under a second.
// A document Validate accepted is answered from its cache; what Restore
// builds is not added to it, since Validate must answer only for bytes that
// passed this schema (a document stored under an older one may not, and
// its stored spec lacks newer defaults).
func Restore(kind, id string, raw, spec []byte) (*Document, error) {
	sum := sha256.Sum256(raw)
	if d := cache.get(sum); d != nil {
		return d, nil
	}
	d := &Document{Kind: kind, ID: id, Raw: append(json.RawMessage(nil), raw...), Hash: sum}
	var err error
	if d.Spec, err = newSpec(kind); err != nil {
		return nil, err
	}
	if err := json.Unmarshal(spec, d.Spec); err != nil {
		return nil, fmt.Errorf("restore %s/%s: %w", kind, id, err)
	}
	return d, nil
}
