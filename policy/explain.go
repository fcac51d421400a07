package policy

import (
	"fmt"
	"strings"
	"time"
)

// MaxExplain bounds the policies an explanation lists; matched ones come
// first.
const MaxExplain = 1000

// Explain says, for each policy of the request's action, which filters
// matched and which did not.
type Explain struct {
	Policies []PolicyExplain `json:"policies"`
	// Omitted counts the policies left out past MaxExplain.
	Omitted int `json:"omitted,omitempty"`
}

// PolicyExplain is one policy's part of an explanation.
type PolicyExplain struct {
	Policy   string `json:"policy"`
	Status   string `json:"status"`
	Priority int    `json:"priority"`
	Matched  bool   `json:"matched"`
	// Outcome is what the policy answers the request, when it matched.
	Outcome string          `json:"outcome,omitempty"`
	Filters []FilterExplain `json:"filters"`
}

// FilterExplain is one filter of a policy: whether it matched, and why.
type FilterExplain struct {
	Filter  string `json:"filter"`
	Matched bool   `json:"matched"`
	Detail  string `json:"detail"`
}

func (ix *Index) explain(req *Request, now time.Time) *Explain {
	a, ok := actionIndex[req.Action]
	if !ok {
		return &Explain{Policies: []PolicyExplain{}}
	}
	action := req.Action
	var matched, others []PolicyExplain
	add := func(p *compiled) {
		pe := p.explain(req, now)
		if pe.Matched {
			matched = append(matched, pe)
		} else {
			others = append(others, pe)
		}
	}
	for _, i := range ix.buckets[a].all {
		add(ix.policies[i])
	}
	for _, p := range ix.off {
		if ActionOf[p.typ] == action {
			add(p)
		}
	}
	all := append(matched, others...)
	ex := &Explain{Policies: all}
	if len(all) > MaxExplain {
		ex.Policies, ex.Omitted = all[:MaxExplain], len(all)-MaxExplain
	}
	if ex.Policies == nil {
		ex.Policies = []PolicyExplain{}
	}
	return ex
}

// explain evaluates every filter of p (no short cut) and says why.
func (p *compiled) explain(req *Request, now time.Time) PolicyExplain {
	v := vars{user: req.User, machine: req.Machine}
	pe := PolicyExplain{Policy: p.id, Status: p.status, Priority: p.priority, Filters: []FilterExplain{}}
	add := func(filter string, ok bool, format string, args ...any) {
		pe.Filters = append(pe.Filters, FilterExplain{Filter: filter, Matched: ok, Detail: fmt.Sprintf(format, args...)})
	}
	if p.status == StatusOff {
		add("status", false, "the policy is off")
	}
	names := func(label, field, s string, gs []*glob) {
		if len(gs) == 0 {
			return
		}
		if i := firstGlob(gs, s, v); i >= 0 {
			add(field, true, "%s %q matches %q", label, s, gs[i].src)
		} else {
			add(field, false, "%s %q matches none of %s", label, s, srcs(gs))
		}
	}
	names("user", "users", req.User, p.users)
	names("machine", "machines", req.Machine, p.machines)
	if len(p.groups) > 0 {
		ok := false
		for _, g := range req.Groups {
			if i := firstGlob(p.groups, g, v); i >= 0 {
				add("groups", true, "group %q matches %q", g, p.groups[i].src)
				ok = true
				break
			}
		}
		if !ok {
			add("groups", false, "groups %q match none of %s", req.Groups, srcs(p.groups))
		}
	}
	if p.window != nil {
		t := now.In(p.window.loc).Format("Mon 2006-01-02 15:04 MST")
		if p.window.contains(now) {
			add("time", true, "%s is inside the window", t)
		} else {
			add("time", false, "%s is outside the window", t)
		}
	}
	if len(p.apps) > 0 {
		var why []string
		ok := false
		for k := range p.apps {
			f := p.apps[k].failing(&req.Application, v)
			if f == "" {
				add("applications", true, "applications[%d] matches", k)
				ok = true
				break
			}
			why = append(why, fmt.Sprintf("applications[%d].%s does not match", k, f))
		}
		if !ok {
			add("applications", false, "%s", strings.Join(why, "; "))
		}
	}
	if len(p.folders) > 0 {
		s := folderPath(req)
		if i := p.firstFolder(s, v); i >= 0 {
			add("folders", true, "%q is in folder %q", s, p.folders[i].src)
		} else {
			var dirs []string
			for _, f := range p.folders {
				dirs = append(dirs, f.src)
			}
			add("folders", false, "%q is in none of %q", s, dirs)
		}
	}
	pe.Matched = p.status != StatusOff && p.matches(req, now, v)
	if pe.Matched {
		pe.Outcome = p.outcome(req).String()
	}
	return pe
}

func srcs(gs []*glob) string {
	q := make([]string, len(gs))
	for i, g := range gs {
		q[i] = fmt.Sprintf("%q", g.src)
	}
	return "[" + strings.Join(q, " ") + "]"
}
