package reconcile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"warden/state"
)

// The active sudoers is read with cvtsudoers -f json, which ships with
// sudo, follows every @include and @includedir as sudo does, and prints
// the rules sudo would apply. warden never parses sudoers syntax itself.

// sudoMember is one entry of a user, runas or command list: its kind
// ("username", "usergroup", "userid", "useralias", "command", ...) and
// value.
type sudoMember struct {
	Kind    string
	Value   string
	SHA256  string // commands with a digest
	Negated bool
}

// sudoRule is one user specification's command spec, with aliases
// expanded: Users may run Commands as RunAs (empty: root).
type sudoRule struct {
	Users    []sudoMember
	RunAs    []sudoMember
	Commands []sudoMember
	NoPasswd bool
}

// activeRules runs cvtsudoers on the main sudoers file.
func activeRules(sudoers string) ([]sudoRule, error) {
	cmd := exec.Command("cvtsudoers", "-f", "json", sudoers)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("cvtsudoers -f json %s: %w: %s", sudoers, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return parseSudoersJSON(out)
}

type sudoJSON struct {
	UserAliases    map[string][]map[string]any `json:"User_Aliases"`
	RunasAliases   map[string][]map[string]any `json:"Runas_Aliases"`
	CommandAliases map[string][]map[string]any `json:"Command_Aliases"`
	UserSpecs      []struct {
		UserList  []map[string]any `json:"User_List"`
		CmndSpecs []struct {
			RunAsUsers []map[string]any `json:"runasusers"`
			Options    []map[string]any `json:"Options"`
			Commands   []map[string]any `json:"Commands"`
		} `json:"Cmnd_Specs"`
	} `json:"User_Specs"`
}

// parseSudoersJSON flattens cvtsudoers' JSON into rules.
func parseSudoersJSON(data []byte) ([]sudoRule, error) {
	var j sudoJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("cvtsudoers output: %w", err)
	}
	var out []sudoRule
	for _, us := range j.UserSpecs {
		users := expand(us.UserList, "useralias", j.UserAliases, 0)
		for _, cs := range us.CmndSpecs {
			r := sudoRule{Users: users,
				RunAs:    expand(cs.RunAsUsers, "runasalias", j.RunasAliases, 0),
				Commands: expand(cs.Commands, "cmndalias", j.CommandAliases, 0)}
			for _, o := range cs.Options {
				if v, ok := o["authenticate"].(bool); ok {
					r.NoPasswd = !v
				}
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// expand turns JSON members into sudoMembers, replacing aliases (of kind
// aliasKind) by their members, nested up to a sane depth.
func expand(list []map[string]any, aliasKind string, aliases map[string][]map[string]any, depth int) []sudoMember {
	var out []sudoMember
	for _, m := range list {
		var sm sudoMember
		for k, v := range m {
			switch k {
			case "negated":
				sm.Negated, _ = v.(bool)
			case "sha256":
				sm.SHA256 = fmt.Sprint(v)
			default:
				sm.Kind, sm.Value = k, fmt.Sprint(v)
			}
		}
		if sm.Kind == aliasKind && depth < 8 {
			for _, e := range expand(aliases[sm.Value], aliasKind, aliases, depth+1) {
				e.Negated = e.Negated != sm.Negated
				out = append(out, e)
			}
			continue
		}
		out = append(out, sm)
	}
	return out
}

// isGrant reports whether r is exactly the rule of grant g.
func (r sudoRule) isGrant(g state.Grant) bool {
	return len(r.Users) == 1 && r.Users[0] == sudoMember{Kind: "username", Value: g.User} &&
		len(r.RunAs) == 1 && r.RunAs[0] == sudoMember{Kind: "username", Value: "root"} &&
		len(r.Commands) == 1 && r.Commands[0] == sudoMember{Kind: "command", Value: g.Scope, SHA256: g.SHA256} &&
		r.NoPasswd
}

// asRoot reports whether r lets its users run something as root: no runas
// list (root is the default), or one naming root, uid 0, ALL, or
// something not resolvable here (a netgroup, say: counted as root, the
// safe side).
func (r sudoRule) asRoot() bool {
	if len(r.RunAs) == 0 {
		return true
	}
	for _, m := range r.RunAs {
		if m.Negated {
			continue
		}
		switch {
		case m.Kind == "username" && (m.Value == "root" || m.Value == "ALL"),
			m.Kind == "userid" && m.Value == "0",
			m.Kind != "username" && m.Kind != "userid" && m.Kind != "usergroup":
			return true
		}
	}
	return false
}

// commands names what r allows, for a drift record.
func (r sudoRule) commands() string {
	var cs []string
	for _, c := range r.Commands {
		s := c.Value
		if c.Kind != "command" {
			s = c.Kind + ":" + s
		}
		if c.Negated {
			s = "!" + s
		}
		cs = append(cs, s)
	}
	slices.Sort(cs)
	return strings.Join(slices.Compact(cs), ", ")
}
