package policy

import (
	"fmt"
	"reflect"
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
// (the policies keep their anchors) or builds new ones (an anchor, the
// status or the set of ids changed); unchanged documents keep their
// compiled policy.
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
			10: func(s *schema.PolicySpec) { s.Filters.Applications = []schema.ApplicationFilter{{Path: "/usr/bin/t10"}} }}), false},
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
			if shared := &got.buckets[0].all[0] == &prev.buckets[0].all[0]; shared != tc.shared {
				t.Errorf("buckets shared: %v, want %v", shared, tc.shared)
			}
			if !reflect.DeepEqual(got.buckets, want.buckets) {
				t.Error("the buckets differ from Compile's")
			}
			for i := range 70 {
				for _, user := range []string{"alice", "bob"} {
					req := elevate(user, nil, fmt.Sprintf("/usr/bin/t%d", i))
					if g, w := got.Evaluate(req, monday10), want.Evaluate(req, monday10); g.Decision != w.Decision || !reflect.DeepEqual(g, w) {
						t.Fatalf("%s %s: Recompile decides %s by %s, Compile %s by %s", user, req.Application.Path, g.Decision, g.Policy, w.Decision, w.Policy)
					}
				}
			}
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
