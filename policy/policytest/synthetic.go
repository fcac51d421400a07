// Package policytest generates synthetic policy sets and requests for
// benchmarks of the policy engine, the same ones for warden's own
// benchmarks and for the comparison with OPA (bench/opa).
package policytest

import (
	"fmt"
	"math/rand/v2"

	"warden/policy"
	"warden/schema"
)

// Unanchored is how many policies of every synthetic set cannot be
// indexed by path (they filter on users only) and so are checked for every
// request: the part of the cost that does not depend on the set's size.
const Unanchored = 20

// Policies returns n policies shaped like a large fleet's: most name one
// application path under a vendor folder or in /usr/bin (a wide folder),
// some a sha256, some a folder of files, some a command line, and a fixed
// few are user-only. Controls, groups and priorities vary. Specs are built
// directly; every one would pass schema.Validate.
func Policies(n int) []*schema.Document {
	docs := make([]*schema.Document, 0, n)
	controls := [][]string{{"allow"}, {"deny"}, {"allow", "justification"}, {"allow", "mfa"}, {"allow", "approval"}}
	for i := range n {
		s := schema.PolicySpec{
			Name: fmt.Sprintf("synthetic %d", i), Type: "PrivilegeElevation", Status: "enforce",
			Priority: i % 100, Controls: controls[i%len(controls)], DurationSeconds: 900,
		}
		f := &s.Filters
		switch {
		case i < Unanchored:
			s.Controls = []string{"deny"}
			f.Users = []string{fmt.Sprintf("svc-%d", i)}
		case i%10 == 1:
			f.Groups = []string{fmt.Sprintf("team-%d", i%50)}
			f.Applications = []schema.ApplicationFilter{{Path: fmt.Sprintf("/usr/bin/tool-%d*", i)}}
		case i%10 == 2:
			f.Applications = []schema.ApplicationFilter{{SHA256: fmt.Sprintf("%064x", i)}}
		case i%10 == 3:
			s.Type = "FileAccess"
			f.Folders = []string{fmt.Sprintf("/srv/data%d", i)}
		case i%10 == 4:
			s.Type = "CommandLine"
			f.Applications = []schema.ApplicationFilter{{Path: fmt.Sprintf("/usr/bin/tool-%d", i), CommandLine: fmt.Sprintf("tool-%d *", i)}}
		default:
			f.Groups = []string{fmt.Sprintf("team-%d", i%50)}
			f.Applications = []schema.ApplicationFilter{{Path: fmt.Sprintf("/opt/vendor%03d/app%d/bin/*", i%500, i)}}
		}
		id := fmt.Sprintf("p%06d", i)
		docs = append(docs, &schema.Document{Kind: schema.KindPolicy, ID: id, Spec: &s})
	}
	return docs
}

// Requests returns m requests against Policies(n), seeded: about half
// match a policy (a vendor application by a member of its team), the rest
// match none (a program no policy names).
func Requests(n, m int, seed uint64) []*policy.Request {
	r := rand.New(rand.NewPCG(seed, seed))
	reqs := make([]*policy.Request, m)
	for k := range reqs {
		req := &policy.Request{User: "erin", Groups: []string{"staff"}, Machine: "ws-17", SessionID: "s-1", Action: policy.ActionElevate}
		i := Unanchored + r.IntN(max(n-Unanchored, 1))
		if k%2 == 0 && i%10 >= 5 && i < n {
			req.Groups = []string{"staff", fmt.Sprintf("team-%d", i%50)}
			req.Application.Path = fmt.Sprintf("/opt/vendor%03d/app%d/bin/run", i%500, i)
		} else {
			req.Application.Path = fmt.Sprintf("/usr/bin/vim%d", r.IntN(1000))
		}
		reqs[k] = req
	}
	return reqs
}

// NoMatch is a request no synthetic policy matches, which still walks the
// index through its widest folder (/usr/bin/).
func NoMatch() *policy.Request {
	return &policy.Request{User: "erin", Groups: []string{"staff"}, Machine: "ws-17", SessionID: "s-1",
		Action: policy.ActionElevate, Application: policy.Application{Path: "/usr/bin/vim", CommandLine: "vim /etc/hosts"}}
}
