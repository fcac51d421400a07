package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // time zones of time windows resolve the same on every host, minimal images included

	"warden/schema"
)

// Decisions, from the most restrictive down. A request gets the decision
// of the most restrictive policy that matches it.
const (
	Deny          = "deny"
	Approval      = "approval"
	MFA           = "mfa"
	Justification = "justification"
	Redirect      = "redirect"
	Allow         = "allow"
)

// Statuses of a policy.
const (
	StatusEnforce       = "enforce"
	StatusMonitor       = "monitor"
	StatusMonitorNotify = "monitor-notify"
	StatusOff           = "off"
)

// outcome is a decision as a rank: a higher rank is more restrictive.
type outcome uint8

const (
	oAllow outcome = iota
	oRedirect
	oJustification
	oMFA
	oApproval
	oDeny
)

var outcomeNames = [...]string{Allow, Redirect, Justification, MFA, Approval, Deny}

func (o outcome) String() string { return outcomeNames[o] }

// controls is a policy's set of controls, one bit per outcome.
type controls uint8

func (c controls) has(o outcome) bool { return c&(1<<o) != 0 }

// ActionOf maps a policy type to the request action it governs.
// LeastPrivilege policies govern elevation: they decide which programs run
// with more than the user's own rights, which is what elevate asks.
var ActionOf = map[string]string{
	"PrivilegeElevation": ActionElevate,
	"LeastPrivilege":     ActionElevate,
	"FileAccess":         ActionFileAccess,
	"CommandLine":        ActionCommand,
	"ApplicationControl": ActionExec,
}

// TypeApplicationControl is the policy type the exec controller enforces.
const TypeApplicationControl = "ApplicationControl"

// actionIndex numbers the actions; each has its own bucket, so a policy of
// one type never takes part in another type's decisions (an
// ApplicationControl deny does not refuse an elevation, nor the reverse).
var actionIndex = map[string]int{ActionElevate: 0, ActionFileAccess: 1, ActionCommand: 2, ActionExec: 3}

// Index is a compiled generation of policies. It is immutable and safe for
// concurrent use.
type Index struct {
	policies []*compiled // every policy but those off, by id
	off      []*compiled // policies with status off, kept for explanations
	buckets  [4]bucket   // by action

	// src and per are what the index was compiled from, and each one's
	// compiled policy (nil where none): Recompile's memory. ascending: the
	// ids of src are in strictly ascending order.
	src       []*schema.Document
	per       []*compiled
	ascending bool
}

// bucket indexes the policies of one action by where a request can be
// told apart cheaply: the literal prefix of an application path or folder
// pattern, or an exact sha256. Policies with no such anchor are in any and
// are checked for every request of the action.
type bucket struct {
	app    radix // by prefix of application.path (and folders, outside file-access)
	target radix // by prefix of target.path (folders of file-access policies)
	sha    map[string][]int32
	any    []int32
	all    []int32 // every policy of the action, for explanations
}

// compiled is one policy ready to match.
type compiled struct {
	id       string
	name     string
	typ      string
	status   string
	monitor  bool
	priority int
	controls controls
	duration int
	redirect string

	users, groups, machines []*glob
	apps                    []appMatcher
	folders                 []folderMatcher
	window                  *window
}

type appMatcher struct {
	path, commandLine, publisher, parent *glob
	sha256                               string
}

// folderMatcher matches a folder and everything below it.
type folderMatcher struct {
	src         string
	self, below *glob
}

// Len is the number of policies compiled, those off included.
func (ix *Index) Len() int { return len(ix.policies) + len(ix.off) }

// Compile checks and indexes the Policy documents of a generation. It fails,
// naming the document and field, on a document that is not a Policy, a
// duplicate id, a pattern with an unknown ${VARIABLE}, a time window it
// cannot read, or a redirect control without redirect.to: a generation that
// does not compile should not replace the one running. The error is a
// schema.Errors, one Issue per broken rule.
func Compile(docs []*schema.Document) (*Index, error) { return Recompile(nil, docs) }

// Check fails exactly where Compile would, with the same errors, without
// building the index: what a source asks before it commits a generation
// (the engine builds the index once the generation is applied). Policies
// compiled before, by either, come from the memo.
func Check(docs []*schema.Document) error {
	_, err := CheckFrom(nil, docs)
	return err
}

// Checked is what a Check compiled, for the next one to start from.
type Checked struct {
	src       []*schema.Document
	per       []*compiled
	ascending bool
}

// CheckFrom is Check, starting from what an earlier check compiled (nil:
// nothing), as Recompile starts from an index: a document that is prev's
// at the same place is not looked up again. It returns what this check
// compiled.
func CheckFrom(prev *Checked, docs []*schema.Document) (*Checked, error) {
	var from *Index
	if prev != nil {
		from = &Index{src: prev.src, per: prev.per, ascending: prev.ascending}
	}
	_, per, ascending, errs := compileAll(docs, from)
	if errs != nil {
		return nil, errs
	}
	return &Checked{src: docs, per: per, ascending: ascending}, nil
}

// compileAll compiles each policy of docs, or returns every broken rule.
// per holds, for each of docs, its compiled policy (nil for one that is
// not indexed). A document that is prev's at the same place (the same
// *schema.Document, as the validation cache and the store hand out for an
// unchanged one) takes prev's compiled policy; the others come from the
// memo or are compiled.
func compileAll(docs []*schema.Document, prev *Index) (all, per []*compiled, ascending bool, errs schema.Errors) {
	all = make([]*compiled, 0, len(docs))
	per = make([]*compiled, len(docs))
	known := make([]*compiled, len(docs))
	fromPrev := make([]bool, len(docs))
	var lookup []int
	for i, d := range docs {
		if prev != nil && i < len(prev.src) && prev.src[i] == d && prev.per[i] != nil {
			known[i], fromPrev[i] = prev.per[i], true
		} else {
			lookup = append(lookup, i)
		}
	}
	memoized(docs, lookup, known)
	// Ids in strictly ascending order (a generation's policies are sorted
	// by id) cannot repeat; otherwise a set finds the duplicates. prev's
	// documents were ascending, and these are them but for a few with
	// the same ids at the same places: ascending too, without reading the
	// 10,000 ids.
	ascending = prev != nil && prev.ascending && len(docs) == len(prev.src)
	for i := 0; ascending && i < len(docs); i++ {
		ascending = docs[i] == prev.src[i] || docs[i].ID == prev.src[i].ID
	}
	if !ascending {
		ascending = true
		for i := 1; ascending && i < len(docs); i++ {
			ascending = docs[i-1].ID < docs[i].ID
		}
	}
	var seen map[string]bool
	if !ascending {
		seen = make(map[string]bool, len(docs))
	}
	for i, d := range docs {
		if fromPrev[i] && seen == nil {
			// prev's own document at its place: it passed every check below.
			all = append(all, known[i])
			per[i] = known[i]
			continue
		}
		spec := d.Policy()
		if spec == nil {
			errs = append(errs, schema.Issue{File: d.Key(), Msg: "not a Policy document"})
			continue
		}
		if seen != nil {
			if seen[d.ID] {
				errs = append(errs, schema.Issue{File: PolicyFile(d.ID), Path: "id", Msg: "duplicate id"})
				continue
			}
			seen[d.ID] = true
		}
		if spec.Type == "LeastPrivilege" && spec.LeastPrivilege != nil {
			// It governs the machine's admin groups (reconcile's groups
			// controller), not requests: its deny must not refuse every
			// elevation (DESIGN.md's example has no application filter).
			continue
		}
		p := known[i]
		if p == nil {
			var perrs schema.Errors
			if p, perrs = compileDoc(d, spec); perrs != nil {
				errs = append(errs, perrs...)
				continue
			}
		}
		all = append(all, p)
		per[i] = p
	}
	return all, per, ascending, errs
}

func (ix *Index) add(p *compiled) {
	i := int32(len(ix.policies))
	ix.policies = append(ix.policies, p)
	b := &ix.buckets[actionIndex[ActionOf[p.typ]]]
	b.all = append(b.all, i)
	for _, a := range placement(p) {
		switch a.where {
		case inTarget:
			b.target.insert(a.key, i)
		case inApp:
			b.app.insert(a.key, i)
		case inSHA:
			b.sha[a.key] = append(b.sha[a.key], i)
		case inAny:
			b.any = append(b.any, i)
		}
	}
}

// anchor is one place of a policy in its action's bucket.
type anchor struct {
	where int // inTarget, inApp, inSHA, inAny
	key   string
}

const (
	inTarget = iota
	inApp
	inSHA
	inAny
)

// placement is where add puts p in its action's bucket, in order.
func placement(p *compiled) []anchor {
	var out []anchor
	fileAccess := ActionOf[p.typ] == ActionFileAccess
	switch {
	case fileAccess && len(p.folders) > 0:
		for _, f := range p.folders {
			out = append(out, anchor{inTarget, f.self.prefix})
		}
	case len(p.apps) > 0 && appsAnchored(p.apps):
		for _, m := range p.apps {
			if m.path != nil {
				out = append(out, anchor{inApp, m.path.prefix})
			} else {
				out = append(out, anchor{inSHA, m.sha256})
			}
		}
	case !fileAccess && len(p.folders) > 0:
		for _, f := range p.folders {
			out = append(out, anchor{inApp, f.self.prefix})
		}
	default:
		out = append(out, anchor{inAny, ""})
	}
	return out
}

// appsAnchored reports whether every application filter names a path or a
// sha256, so that the policy can be found through one of them.
func appsAnchored(apps []appMatcher) bool {
	for _, m := range apps {
		if m.path == nil && m.sha256 == "" {
			return false
		}
	}
	return true
}

// PolicyFile is where a policy's document lives in a bundle, the file
// Compile's errors name.
func PolicyFile(id string) string { return "policies/" + id + ".json" }

func compilePolicy(id string, s *schema.PolicySpec) (*compiled, schema.Errors) {
	var errs schema.Errors
	fail := func(field, format string, args ...any) {
		errs = append(errs, schema.Issue{File: PolicyFile(id), Path: "spec." + field, Msg: fmt.Sprintf(format, args...)})
	}
	p := &compiled{id: id, name: s.Name, typ: s.Type, status: s.Status, priority: s.Priority, duration: s.DurationSeconds}
	if _, ok := ActionOf[s.Type]; !ok {
		fail("type", "unknown type %q", s.Type)
	}
	switch s.Status {
	case StatusEnforce, StatusOff:
	case StatusMonitor, StatusMonitorNotify:
		p.monitor = true
	default:
		fail("status", "unknown status %q", s.Status)
	}
	if len(s.Controls) == 0 {
		fail("controls", "must not be empty")
	}
	for i, c := range s.Controls {
		o := slices.Index(outcomeNames[:], c)
		if o < 0 {
			fail(fmt.Sprintf("controls[%d]", i), "unknown control %q", c)
			continue
		}
		p.controls |= 1 << o
	}
	if s.Redirect != nil {
		p.redirect = s.Redirect.To
	}
	if p.controls.has(oRedirect) && p.redirect == "" {
		fail("redirect.to", "required when controls include redirect")
	}
	globs := func(field string, pats []string, path bool) []*glob {
		var out []*glob
		for i, pat := range pats {
			g, err := compileGlob(pat, path)
			if err != nil {
				fail(fmt.Sprintf("%s[%d]", field, i), "%v", err)
				continue
			}
			out = append(out, g)
		}
		return out
	}
	f := &s.Filters
	p.users = globs("filters.users", f.Users, false)
	p.groups = globs("filters.groups", f.Groups, false)
	p.machines = globs("filters.machines", f.Machines, false)
	for i, a := range f.Applications {
		field := fmt.Sprintf("filters.applications[%d]", i)
		one := func(name, pat string, path bool) *glob {
			if pat == "" {
				return nil
			}
			if g := globs(field+"."+name, []string{pat}, path); len(g) == 1 {
				return g[0]
			}
			return nil
		}
		p.apps = append(p.apps, appMatcher{
			path:        one("path", a.Path, true),
			commandLine: one("commandLine", a.CommandLine, false),
			publisher:   one("publisher", a.Publisher, false),
			parent:      one("parent", a.Parent, true),
			sha256:      strings.ToLower(a.SHA256),
		})
	}
	for i, dir := range f.Folders {
		field := fmt.Sprintf("filters.folders[%d]", i)
		trimmed := strings.TrimRight(dir, "/")
		self := globs(field, []string{cmpOr(trimmed, "/")}, true)
		below := globs(field, []string{trimmed + "/**"}, true)
		if len(self) == 1 && len(below) == 1 {
			p.folders = append(p.folders, folderMatcher{src: dir, self: self[0], below: below[0]})
		}
	}
	if s.Type == TypeApplicationControl {
		checkExecPolicy(s, fail)
	}
	if f.Time != nil {
		w, err := compileWindow(f.Time)
		if err != nil {
			fail("filters.time", "%v", err)
		}
		p.window = w
	}
	return p, errs
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// window is a compiled time filter.
type window struct {
	days      uint8 // bit per time.Weekday; 0 is every day
	from, to  int   // minutes after midnight; -1 when unset
	loc       *time.Location
	notBefore time.Time
	notAfter  time.Time
}

var dayBits = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday,
	"wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

func compileWindow(t *schema.TimeWindow) (*window, error) {
	w := &window{from: -1, to: -1, loc: time.UTC}
	for _, d := range t.Days {
		wd, ok := dayBits[d]
		if !ok {
			return nil, fmt.Errorf("days: unknown day %q", d)
		}
		w.days |= 1 << wd
	}
	var err error
	if w.from, err = clock(t.From); err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	if w.to, err = clock(t.To); err != nil {
		return nil, fmt.Errorf("to: %w", err)
	}
	if w.from >= 0 && w.from == w.to {
		return nil, fmt.Errorf("from and to are both %s: say what you mean by leaving both out (all day)", t.From)
	}
	if t.TimeZone != "" {
		if w.loc, err = time.LoadLocation(t.TimeZone); err != nil {
			return nil, fmt.Errorf("timeZone: %w", err)
		}
	}
	for _, x := range []struct {
		name string
		s    string
		dst  *time.Time
	}{{"notBefore", t.NotBefore, &w.notBefore}, {"notAfter", t.NotAfter, &w.notAfter}} {
		if x.s == "" {
			continue
		}
		if *x.dst, err = time.Parse(time.RFC3339, x.s); err != nil {
			return nil, fmt.Errorf("%s: %w", x.name, err)
		}
	}
	if !w.notBefore.IsZero() && !w.notAfter.IsZero() && w.notAfter.Before(w.notBefore) {
		return nil, errors.New("notAfter is before notBefore")
	}
	return w, nil
}

// clock parses HH:MM into minutes after midnight; "" is -1.
func clock(s string) (int, error) {
	if s == "" {
		return -1, nil
	}
	t, err := time.Parse("15:04", s)
	if err != nil {
		return 0, err
	}
	return t.Hour()*60 + t.Minute(), nil
}

// contains reports whether now falls in the window.
func (w *window) contains(now time.Time) bool {
	if !w.notBefore.IsZero() && now.Before(w.notBefore) {
		return false
	}
	if !w.notAfter.IsZero() && now.After(w.notAfter) {
		return false
	}
	t := now.In(w.loc)
	if w.days != 0 && w.days&(1<<t.Weekday()) == 0 {
		return false
	}
	m := t.Hour()*60 + t.Minute()
	switch {
	case w.from >= 0 && w.to >= 0 && w.from > w.to: // across midnight
		return m >= w.from || m < w.to
	case w.from >= 0 && m < w.from:
		return false
	case w.to >= 0 && m >= w.to:
		return false
	}
	return true
}
