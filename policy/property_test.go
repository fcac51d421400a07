package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"warden/schema"
)

// A small world, so that random policies and requests often meet.
var (
	worldUsers    = []string{"alice", "bob", "carol", "root"}
	worldGroups   = []string{"dev", "staff", "ops"}
	worldMachines = []string{"ws-1", "ws-2", "srv-1"}
	worldApps     = []string{"/usr/bin/nc", "/usr/bin/ncat", "/usr/bin/apt", "/usr/bin/apt-get", "/opt/x/bin/tool",
		"/home/alice/bin/run", "/root/bin/run", "/usr/local/sbin/nc"}
	worldTargets  = []string{"/etc/shadow", "/etc/ssh/sshd_config", "/home/alice/.ssh/id", "/opt/x/data", "/root/.bashrc"}
	worldShas     = []string{shaNC, "2222222222222222222222222222222222222222222222222222222222222222"}
	worldPatterns = []string{"/usr/bin/nc*", "/usr/bin/*", "/usr/**", "**", "/opt/*/bin/*", "${HOME}/bin/*", "/usr/bin/apt?",
		"/usr/bin/apt-get", "/usr/**/nc", "/home/${USER}/**", "*"}
	worldFolders  = []string{"/usr", "/opt/x", "${HOME}", "/", "/etc/ssh/", "/etc"}
	worldControls = []string{"allow", "deny", "mfa", "approval", "justification", "redirect"}
	worldTypes    = []string{"PrivilegeElevation", "FileAccess", "CommandLine", "LeastPrivilege"}
	worldStatus   = []string{"enforce", "enforce", "enforce", "monitor", "monitor-notify", "off"}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func some[T any](r *rand.Rand, xs []T, max int) []T {
	n := r.IntN(max + 1)
	out := make([]T, 0, n)
	for range n {
		out = append(out, pick(r, xs))
	}
	return out
}

func randomPolicy(r *rand.Rand, id string) *schema.Document {
	spec := schema.PolicySpec{
		Type: pick(r, worldTypes), Status: pick(r, worldStatus), Priority: r.IntN(3),
		Controls: some(r, worldControls, 2), DurationSeconds: 60 * r.IntN(3), Redirect: &schema.Redirect{To: "/usr/bin/safe"},
	}
	if len(spec.Controls) == 0 {
		spec.Controls = []string{"allow"}
	}
	f := &spec.Filters
	if r.IntN(3) == 0 {
		f.Users = some(r, append(worldUsers, "*", "a*"), 2)
	}
	if r.IntN(3) == 0 {
		f.Groups = some(r, worldGroups, 2)
	}
	if r.IntN(4) == 0 {
		f.Machines = some(r, append(worldMachines, "ws-*"), 2)
	}
	for range r.IntN(3) {
		var a schema.ApplicationFilter
		if r.IntN(4) != 0 {
			a.Path = pick(r, worldPatterns)
		}
		if r.IntN(4) == 0 {
			a.SHA256 = pick(r, worldShas)
		}
		if r.IntN(5) == 0 {
			a.CommandLine = pick(r, []string{"nc -l *", "*install*"})
		}
		f.Applications = append(f.Applications, a)
	}
	if r.IntN(3) == 0 {
		f.Folders = some(r, worldFolders, 2)
	}
	if r.IntN(5) == 0 {
		f.Time = &schema.TimeWindow{Days: some(r, []string{"mon", "tue", "sat"}, 2)}
		if r.IntN(2) == 0 {
			f.Time.From, f.Time.To = "09:00", "17:00"
		}
	}
	return policyDoc(id, spec)
}

func randomRequest(r *rand.Rand) (*Request, time.Time) {
	req := &Request{
		User: pick(r, worldUsers), Groups: some(r, worldGroups, 2), Machine: pick(r, worldMachines),
		Action:      pick(r, []string{ActionElevate, ActionFileAccess, ActionCommand}),
		Application: Application{Path: pick(r, worldApps), CommandLine: pick(r, []string{"nc -l 4444", "apt install jq", ""})},
		MFAVerified: r.IntN(4) == 0, Approved: r.IntN(4) == 0,
	}
	if r.IntN(2) == 0 {
		req.Application.SHA256 = pick(r, worldShas)
	}
	if req.Action == ActionFileAccess {
		req.Target = &Target{Path: pick(r, worldTargets)}
	}
	if r.IntN(3) == 0 {
		req.Justification = "because"
	}
	return req, monday10.Add(time.Duration(r.IntN(7*24)) * time.Hour)
}

func randomPolicies(r *rand.Rand, n int, prefix string) []*schema.Document {
	docs := make([]*schema.Document, n)
	for i := range docs {
		docs[i] = randomPolicy(r, fmt.Sprintf("%s%d", prefix, i))
	}
	return docs
}

// TestAddingDenyNeverAllows is the property of the issue: adding an
// enforcing deny policy never turns a denied request into an allowed one
// (nor makes any answer less restrictive). A monitor policy is not
// enforced, so it is checked separately: adding one never changes what an
// enforcing policy enforces.
func TestAddingDenyNeverAllows(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	for round := range 300 {
		docs := randomPolicies(r, 1+r.IntN(12), "p")
		deny := randomPolicy(r, "zz-deny")
		deny.Policy().Controls, deny.Policy().Status = []string{"deny"}, StatusEnforce
		monitor := randomPolicy(r, "zz-monitor")
		monitor.Policy().Status = pick(r, []string{StatusMonitor, StatusMonitorNotify})
		before := mustCompile(t, docs)
		withDeny := mustCompile(t, append(slices.Clone(docs), deny))
		withMonitor := mustCompile(t, append(slices.Clone(docs), monitor))
		for range 50 {
			req, now := randomRequest(r)
			b, d, m := before.Evaluate(req, now), withDeny.Evaluate(req, now), withMonitor.Evaluate(req, now)
			if rank(d.Effective) < rank(b.Effective) {
				t.Fatalf("round %d: adding %+v loosened %s to %s for %+v", round, deny.Policy(), b.Effective, d.Effective, req)
			}
			if b.EnforcedBy != "" && (m.Effective != b.Effective || m.EnforcedBy != b.EnforcedBy) {
				t.Fatalf("round %d: adding monitor policy %+v changed the enforced %s (%s) to %s (%s)", round, monitor.Policy(), b.Effective, b.EnforcedBy, m.Effective, m.EnforcedBy)
			}
		}
	}
}

func rank(decision string) int { return slices.Index(outcomeNames[:], decision) }

// TestIndexAgreesWithScan: the index finds exactly the policies a scan of
// every policy finds, and EvaluateExplain agrees with Evaluate.
func TestIndexAgreesWithScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	hits, total := 0, 0
	defer func() {
		if hits*5 < total { // the world is small enough that matches are common
			t.Errorf("only %d of %d requests matched a policy: the test checks little", hits, total)
		}
	}()
	for round := range 200 {
		ix := mustCompile(t, randomPolicies(r, 1+r.IntN(40), "p"))
		for range 50 {
			req, now := randomRequest(r)
			d := ix.EvaluateExplain(req, now)
			var scan []string
			for _, pe := range d.Explain.Policies {
				if pe.Matched {
					scan = append(scan, pe.Policy)
				}
			}
			total++
			if len(d.Matched) > 0 {
				hits++
			}
			got := slices.Clone(d.Matched)
			slices.Sort(got)
			slices.Sort(scan)
			if !slices.Equal(got, scan) {
				t.Fatalf("round %d: index matched %v, a scan matches %v, for %+v", round, got, scan, req)
			}
		}
	}
}
