package doctor

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// defaultSudoersDir is Settings enforcement.sudoersDir's default.
const defaultSudoersDir = "/etc/sudoers.d"

var includeDir = regexp.MustCompile(`^\s*[@#]includedir\s+(\S+)\s*$`)

// checkSudoers: sudo reads the drop-in folder warden writes grants to, and
// no warden-* drop-in outlives its grant.
func checkSudoers(e *Env) Result {
	dir, _ := e.settingsField("enforcement", "sudoersDir").(string)
	if dir == "" {
		dir = defaultSudoersDir
	}
	data, err := os.ReadFile(e.Sudoers)
	if os.IsNotExist(err) {
		return skip(e.Sudoers + " does not exist (sudo not installed)")
	}
	if err != nil {
		return warn(fmt.Sprintf("read %s: %v", e.Sudoers, err), "run `sudo warden doctor`")
	}
	included := false
	for _, line := range strings.Split(string(data), "\n") {
		if m := includeDir.FindStringSubmatch(line); m != nil && filepath.Clean(m[1]) == filepath.Clean(dir) {
			included = true
		}
	}
	if !included {
		return fail(e.Sudoers+" does not include "+dir+": time-limited sudo grants would have no effect",
			"add `@includedir "+dir+"` to "+e.Sudoers+" with visudo")
	}
	inForce := map[string]bool{}
	for _, g := range e.Data.Grants {
		if g.ExpiresAt.After(e.Now()) {
			inForce[g.ID] = true
		}
	}
	names, _ := filepath.Glob(filepath.Join(dir, "warden-*"))
	var stale []string
	for _, n := range names {
		base := filepath.Base(n)
		if strings.Contains(base, ".") || strings.HasSuffix(base, "~") {
			continue // sudo ignores these names (temporary files)
		}
		if !inForce[strings.TrimPrefix(base, "warden-")] {
			stale = append(stale, n)
		}
	}
	if len(stale) > 0 {
		return fail("drop-ins without a grant in force: "+strings.Join(stale, ", "),
			"remove them (`rm "+strings.Join(stale, " ")+"`) and check `warden drift`")
	}
	return pass(fmt.Sprintf("%s includes %s; %d warden drop-in(s), all with a grant in force", e.Sudoers, dir, len(names)))
}

// leastPrivilege is the part of a LeastPrivilege policy doctor reads.
type leastPrivilege struct {
	Type           string `json:"type"`
	Status         string `json:"status"`
	LeastPrivilege struct {
		AdminGroups    []string `json:"adminGroups"`
		StandingAdmins []string `json:"standingAdmins"`
	} `json:"leastPrivilege"`
}

// checkAdminGroups: every admin group a LeastPrivilege policy names holds
// only its standingAdmins (read from /etc/group).
func checkAdminGroups(e *Env) Result {
	groups, err := readGroups(e.GroupFile)
	if err != nil {
		return warn(fmt.Sprintf("read %s: %v", e.GroupFile, err), "run `sudo warden doctor`")
	}
	var extra []string
	enforce, policies := false, 0
	for _, raw := range e.Data.Policies {
		var p leastPrivilege
		if json.Unmarshal(raw, &p) != nil || p.Type != "LeastPrivilege" || p.Status == "off" {
			continue
		}
		policies++
		enforce = enforce || p.Status == "enforce"
		for _, g := range p.LeastPrivilege.AdminGroups {
			for _, u := range groups[g] {
				if !slices.Contains(p.LeastPrivilege.StandingAdmins, u) {
					extra = append(extra, u+" in "+g)
				}
			}
		}
	}
	switch {
	case policies == 0:
		return skip("no LeastPrivilege policy")
	case len(extra) == 0:
		return pass("admin groups hold only the standing admins")
	case enforce:
		return fail("members beyond standingAdmins: "+strings.Join(extra, ", "),
			"the GroupMembership controller should remove them: check `warden drift`; or add them to standingAdmins")
	}
	return warn("members beyond standingAdmins (policy in monitor mode): "+strings.Join(extra, ", "),
		"remove them with `gpasswd -d USER GROUP`, or set the policy to enforce")
}

// readGroups maps group names to their listed members.
func readGroups(path string) (map[string][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Split(sc.Text(), ":")
		if len(fs) < 4 {
			continue
		}
		for _, m := range strings.Split(fs[3], ",") {
			if m = strings.TrimSpace(m); m != "" {
				out[fs[0]] = append(out[fs[0]], m)
			}
		}
	}
	return out, sc.Err()
}
