// Package opa compares warden's policy engine with OPA evaluating the same
// rules written in Rego. It is a module of its own (replace warden => ../..)
// so that the agent never depends on OPA; it holds benchmarks and the
// translation of warden policies into Rego, nothing the agent uses.
package opa

import (
	"fmt"
	"strings"

	"warden/policy"
	"warden/schema"
)

// regoHeader is the decision logic: every rule adds a hit, the most
// restrictive hit wins, ties by priority then id, no hit is deny. outcome
// is warden's control semantics (policy.compiled.outcome).
const regoHeader = `package warden

import rego.v1

names := ["allow", "redirect", "justification", "mfa", "approval", "deny"]

outcome(c) := 5 if "deny" in c
else := 4 if {
	"approval" in c
	not input.approved
}
else := 3 if {
	"mfa" in c
	not input.mfaVerified
}
else := 2 if {
	"justification" in c
	trim_space(object.get(input, "justification", "")) == ""
}
else := 1 if "redirect" in c
else := 0

default decision := {"decision": "deny", "policy": ""}

decision := {"decision": names[0 - best[0]], "policy": best[2]} if {
	ranked := sort([[0 - h.rank, 0 - h.priority, h.id] | some h in hits])
	best := ranked[0]
}
`

// Rego writes docs as one Rego module, one rule per policy (two for a
// folder: the folder itself and below it), in the forms OPA's rule index
// understands: equality on input.action and input.user, membership for
// groups, glob.match with the / delimiter for paths, startswith for
// folders. It supports the filters the synthetic sets use and refuses the
// rest rather than translate them wrongly.
func Rego(docs []*schema.Document) (string, error) {
	var b strings.Builder
	b.WriteString(regoHeader)
	for _, d := range docs {
		p := d.Policy()
		if p.Status != policy.StatusEnforce {
			return "", fmt.Errorf("%s: only enforce policies are translated", d.ID)
		}
		f := p.Filters
		if len(f.Machines) > 0 || f.Time != nil || len(f.Users) > 1 || len(f.Groups) > 1 || len(f.Applications) > 1 || len(f.Folders) > 1 {
			return "", fmt.Errorf("%s: filters beyond the synthetic subset", d.ID)
		}
		var body []string
		body = append(body, fmt.Sprintf("input.action == %q", policy.ActionOf[p.Type]))
		// A lone "*" (a glob) matches every user: no condition.
		if len(f.Users) == 1 && f.Users[0] != "*" {
			if strings.ContainsAny(f.Users[0], "*?") {
				return "", fmt.Errorf("%s: user patterns are not translated", d.ID)
			}
			body = append(body, fmt.Sprintf("input.user == %q", f.Users[0]))
		}
		if len(f.Groups) == 1 {
			body = append(body, fmt.Sprintf("%q in input.groups", f.Groups[0]))
		}
		if len(f.Applications) == 1 {
			a := f.Applications[0]
			if a.Publisher != "" || a.Parent != "" {
				return "", fmt.Errorf("%s: publisher and parent are not translated", d.ID)
			}
			if a.Path != "" {
				if strings.ContainsAny(a.Path, "*?") {
					body = append(body, fmt.Sprintf("glob.match(%q, [\"/\"], input.application.path)", a.Path))
				} else {
					body = append(body, fmt.Sprintf("input.application.path == %q", a.Path))
				}
			}
			if a.SHA256 != "" {
				body = append(body, fmt.Sprintf("input.application.sha256 == %q", a.SHA256))
			}
			if a.CommandLine != "" {
				body = append(body, fmt.Sprintf("glob.match(%q, null, input.application.commandLine)", a.CommandLine))
			}
		}
		controls := fmt.Sprintf("%q", p.Controls)
		controls = "[" + strings.Join(strings.Fields(strings.Trim(controls, "[]")), ", ") + "]"
		head := fmt.Sprintf("hits contains {\"id\": %q, \"rank\": outcome(%s), \"priority\": %d} if {\n", d.ID, controls, p.Priority)
		bodies := [][]string{body}
		if len(f.Folders) == 1 {
			dir := strings.TrimRight(f.Folders[0], "/")
			if strings.ContainsAny(dir, "*?$") {
				return "", fmt.Errorf("%s: folder patterns are not translated", d.ID)
			}
			bodies = [][]string{
				append(append([]string{}, body...), fmt.Sprintf("input.target.path == %q", dir)),
				append(append([]string{}, body...), fmt.Sprintf("startswith(input.target.path, %q)", dir+"/")),
			}
		}
		for _, bd := range bodies {
			b.WriteString("\n")
			b.WriteString(head)
			for _, line := range bd {
				b.WriteString("\t" + line + "\n")
			}
			b.WriteString("}\n")
		}
	}
	return b.String(), nil
}
