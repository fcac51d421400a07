package policy

import "time"

// matches reports whether every filter of p matches req at now. An empty
// filter matches everything. Cheap filters go first.
func (p *compiled) matches(req *Request, now time.Time, v vars) bool {
	return anyGlob(p.users, req.User, v) &&
		anyGlob(p.machines, req.Machine, v) &&
		p.groupsMatch(req, v) &&
		(p.window == nil || p.window.contains(now)) &&
		p.appsMatch(req, v) &&
		p.foldersMatch(req, v)
}

func anyGlob(gs []*glob, s string, v vars) bool {
	if len(gs) == 0 {
		return true
	}
	return firstGlob(gs, s, v) >= 0
}

// firstGlob is the index of the first pattern s matches, or -1.
func firstGlob(gs []*glob, s string, v vars) int {
	for i, g := range gs {
		if g.match(s, v) {
			return i
		}
	}
	return -1
}

func (p *compiled) groupsMatch(req *Request, v vars) bool {
	if len(p.groups) == 0 {
		return true
	}
	for _, g := range req.Groups {
		if firstGlob(p.groups, g, v) >= 0 {
			return true
		}
	}
	return false
}

func (p *compiled) appsMatch(req *Request, v vars) bool {
	if len(p.apps) == 0 {
		return true
	}
	for k := range p.apps {
		if p.apps[k].failing(&req.Application, v) == "" {
			return true
		}
	}
	return false
}

// failing names the first field of m that a does not match, or "" when all
// of them match. A sha256 is compared exactly; the rest are patterns.
func (m *appMatcher) failing(a *Application, v vars) string {
	switch {
	case m.path != nil && !m.path.match(a.Path, v):
		return "path"
	case m.sha256 != "" && m.sha256 != a.SHA256:
		return "sha256"
	case m.commandLine != nil && !m.commandLine.match(a.CommandLine, v):
		return "commandLine"
	case m.publisher != nil && !m.publisher.match(a.Publisher, v):
		return "publisher"
	case m.parent != nil && !m.parent.match(a.Parent, v):
		return "parent"
	}
	return ""
}

// folderPath is the path folders are about: the target of a file access,
// else the application's own path.
func folderPath(req *Request) string {
	if req.Action != ActionFileAccess {
		return req.Application.Path
	}
	if req.Target != nil {
		return req.Target.Path
	}
	return ""
}

func (p *compiled) foldersMatch(req *Request, v vars) bool {
	if len(p.folders) == 0 {
		return true
	}
	return p.firstFolder(folderPath(req), v) >= 0
}

func (p *compiled) firstFolder(s string, v vars) int {
	for i := range p.folders {
		f := &p.folders[i]
		if f.self.match(s, v) || f.below.match(s, v) {
			return i
		}
	}
	return -1
}

// MatchesMachine reports whether a policy's machines filter selects the
// machine (an empty filter selects every machine), with the patterns as
// the engine matches them. Controllers that apply a policy to the machine
// itself (LeastPrivilege's admin groups) use it; a pattern that does not
// compile selects nothing.
func MatchesMachine(patterns []string, machine string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if g, err := compileGlob(p, false); err == nil && g.match(machine, vars{machine: machine}) {
			return true
		}
	}
	return false
}
