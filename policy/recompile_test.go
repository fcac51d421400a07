package policy

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"warden/schema"
)

// recompileDocs is a generation of n policies; change alters the policy of
// index i (nil: none).
func recompileDocs(n int, change func(i int, s *schema.PolicySpec)) []*schema.Document {
	out := make([]*schema.Document, n)
	for i := range n {
		s := schema.PolicySpec{Priority: i % 7, Controls: []string{"allow"},
			Filters: schema.Filters{Users: []string{"*"}, Applications: []schema.ApplicationFilter{{Path: fmt.Sprintf("/usr/bin/t%d*", i)}}}}
		if i%5 == 0 {
			s.Filters.Applications = nil // in any
		}
		if i%11 == 0 {
			s.Controls = []string{"deny"}
		}
		if change != nil {
			change(i, &s)
		}
		out[i] = policyDoc(fmt.Sprintf("p%03d", i), s)
	}
	return out
}

// Recompile of a generation in which a few policies changed decides
// exactly as Compile of it, whether it shares the previous index's buckets
// (the policies keep their anchors), patches them (an anchor or the action
// changed) or builds new ones (a status or the set of ids changed);
// unchanged documents keep their compiled policy.
func TestRecompileAgreesWithCompile(t *testing.T) {
	base := recompileDocs(60, nil)
	prev := mustCompile(t, base)
	cases := []struct {
		name   string
		docs   []*schema.Document
		shared bool
	}{
		{"priority and controls changed", withChanged(base, map[int]func(s *schema.PolicySpec){
			3: func(s *schema.PolicySpec) { s.Priority = 99; s.Controls = []string{"deny"} },
			7: func(s *schema.PolicySpec) { s.Filters.Users = []string{"bob"} }}), true},
		{"an application path changed", withChanged(base, map[int]func(s *schema.PolicySpec){
			4: func(s *schema.PolicySpec) { s.Filters.Applications[0].Path = "/opt/other" }}), false},
		{"a policy in any gets an anchor", withChanged(base, map[int]func(s *schema.PolicySpec){
			10: func(s *schema.PolicySpec) {
				s.Filters.Applications = []schema.ApplicationFilter{{Path: "/usr/bin/t10"}}
			}}), false},
		{"a policy turned off", withChanged(base, map[int]func(s *schema.PolicySpec){
			6: func(s *schema.PolicySpec) { s.Status = StatusOff }}), false},
		{"a type of another action", withChanged(base, map[int]func(s *schema.PolicySpec){
			8: func(s *schema.PolicySpec) { s.Type = "CommandLine" }}), false},
		{"a policy removed", append(append([]*schema.Document(nil), base[:20]...), base[21:]...), false},
		{"nothing changed", base, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Recompile(prev, tc.docs)
			if err != nil {
				t.Fatal(err)
			}
			want := mustCompile(t, tc.docs)
			if tc.shared && !reflect.DeepEqual(got.buckets, want.buckets) {
				t.Error("the buckets differ from Compile's")
			}
			sameDecisions(t, got, want, 70)
			for i, d := range tc.docs {
				if i < len(base) && d == base[i] && got.per[i] != prev.per[i] {
					t.Fatalf("%s: unchanged document compiled again", d.ID)
				}
			}
		})
	}
}

// A duplicate id is refused by Recompile as by Compile, sorted or not.
func TestRecompileRefusesDuplicates(t *testing.T) {
	base := recompileDocs(5, nil)
	prev := mustCompile(t, base)
	dup := append(append([]*schema.Document(nil), base...), base[2])
	if _, err := Recompile(prev, dup); err == nil {
		t.Fatal("a duplicate id was accepted")
	}
	if _, err := Recompile(prev, []*schema.Document{base[0], base[0], base[1]}); err == nil {
		t.Fatal("a duplicate id was accepted (adjacent)")
	}
	// The same places, one document replaced by another with its
	// neighbour's id: prev's order does not vouch for it.
	same := slices.Clone(base)
	same[2] = policyDoc(base[1].ID, schema.PolicySpec{Controls: []string{"deny"}})
	if _, err := Recompile(prev, same); err == nil || !strings.Contains(err.Error(), "duplicate id") {
		t.Fatalf("a replaced document taking its neighbour's id: err = %v", err)
	}
	if _, err := CheckFrom(&Checked{src: prev.src, per: prev.per, ascending: prev.ascending}, same); err == nil {
		t.Fatal("CheckFrom accepted a replaced document taking its neighbour's id")
	}
}

func withChanged(base []*schema.Document, changes map[int]func(s *schema.PolicySpec)) []*schema.Document {
	out := append([]*schema.Document(nil), base...)
	for i, f := range changes {
		out[i] = recompileDocs(len(base), func(j int, s *schema.PolicySpec) {
			if j == i {
				f(s)
			}
		})[i]
	}
	return out
}

// sameDecisions fails t unless got and want decide alike on requests of
// every kind the test generations hold.
func sameDecisions(t *testing.T, got, want *Index, n int) {
	t.Helper()
	for i := range n + 10 {
		for _, user := range []string{"alice", "bob"} {
			for _, app := range []string{fmt.Sprintf("/usr/bin/t%d", i), fmt.Sprintf("/usr/bin/t%d-x", i), fmt.Sprintf("/opt/o%d", i), "/opt/other"} {
				for _, action := range []string{ActionElevate, ActionCommand} {
					req := elevate(user, nil, app)
					req.Action = action
					req.Application.CommandLine = app
					req.Application.SHA256 = testSHA(i % 4)
					g, w := got.Evaluate(req, monday10), want.Evaluate(req, monday10)
					if !reflect.DeepEqual(g, w) {
						t.Fatalf("%s %s %s: Recompile decides %s by %s (%v), Compile %s by %s (%v)", action, user, app, g.Decision, g.Policy, g.Matched, w.Decision, w.Policy, w.Matched)
					}
				}
			}
		}
	}
}

// A chain of generations, each changing a few random policies' anchors,
// action, users or status from the one before, decides at every step as
// Compile of that generation does.
func TestRecompileChainAgrees(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 17))
	const n = 80
	specs := make([]schema.PolicySpec, n)
	docs := recompileDocs(n, func(i int, s *schema.PolicySpec) { specs[i] = *s })
	ix := mustCompile(t, docs)
	prevDocs := docs
	for step := range 60 {
		docs = append([]*schema.Document(nil), docs...)
		for range 1 + rng.IntN(6) {
			i := rng.IntN(n)
			s := specs[i]
			s.Filters.Applications = slices.Clone(s.Filters.Applications)
			switch rng.IntN(7) {
			case 0:
				s.Filters.Applications = []schema.ApplicationFilter{{Path: fmt.Sprintf("/opt/o%d*", rng.IntN(n))}}
			case 1:
				s.Filters.Applications = append(s.Filters.Applications, schema.ApplicationFilter{Path: fmt.Sprintf("/usr/bin/t%d", rng.IntN(n))})
			case 2:
				s.Filters.Applications = nil
			case 3:
				s.Type = []string{"PrivilegeElevation", "CommandLine"}[rng.IntN(2)]
			case 4:
				s.Filters.Users = []string{[]string{"*", "alice", "bob"}[rng.IntN(3)]}
			case 5:
				s.Status = []string{StatusEnforce, StatusMonitor, StatusOff}[rng.IntN(3)]
			case 6:
				s.Filters.Applications = []schema.ApplicationFilter{{SHA256: testSHA(rng.IntN(4))}}
			}
			specs[i] = s
			docs[i] = policyDoc(docs[i].ID, s)
		}
		next, err := Recompile(ix, docs)
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		sameDecisions(t, next, mustCompile(t, docs), n)
		sameDecisions(t, ix, mustCompile(t, prevDocs), n) // prev is not changed
		ix, prevDocs = next, docs
	}
}

func testSHA(i int) string { return strings.Repeat(fmt.Sprintf("%x", i+10), 64) }

// CheckFrom refuses what Check refuses, starting from an earlier check,
// and takes the compiled policy of a document at its place in that check.
func TestCheckFrom(t *testing.T) {
	base := recompileDocs(30, nil)
	prev, err := CheckFrom(nil, base)
	if err != nil {
		t.Fatal(err)
	}
	broken := withChanged(base, map[int]func(s *schema.PolicySpec){
		4: func(s *schema.PolicySpec) { s.Controls = []string{"shrug"} }})
	if _, err := CheckFrom(prev, broken); err == nil || !strings.Contains(err.Error(), "unknown control") {
		t.Fatalf("a broken policy: err = %v", err)
	}
	dup := append(append([]*schema.Document(nil), base...), base[3])
	if _, err := CheckFrom(prev, dup); err == nil || !strings.Contains(err.Error(), "duplicate id") {
		t.Fatalf("a duplicate id: err = %v", err)
	}
	next, err := CheckFrom(prev, withChanged(base, map[int]func(s *schema.PolicySpec){
		2: func(s *schema.PolicySpec) { s.Priority = 50 }}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range base {
		if reused := next.per[i] == prev.per[i]; reused != (i != 2) {
			t.Fatalf("policy %d: compiled policy reused %v", i, reused)
		}
	}
}
