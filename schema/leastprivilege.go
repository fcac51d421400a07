package schema

// checkPolicy checks what #Policy's patterns cannot say in a way an
// operator reads: leastPrivilege belongs to LeastPrivilege policies only,
// and one that would leave the admin groups with no member must say so
// with allowEmpty. Validation sees the policy, not the machine: it cannot
// know whether a standing admin exists, so it refuses only an empty
// standingAdmins list without allowEmpty (the controller never removes
// root, whatever the list says).
func checkPolicy(name string, p *PolicySpec) Errors {
	lp := p.LeastPrivilege
	if lp == nil {
		return nil
	}
	if p.Type != "LeastPrivilege" {
		return Errors{{File: name, Path: "spec.leastPrivilege",
			Msg: `field not allowed (only on a policy of type "LeastPrivilege")`}}
	}
	if len(lp.StandingAdmins) == 0 && !lp.AllowEmpty {
		return Errors{{File: name, Path: "spec.leastPrivilege.standingAdmins",
			Msg: "empty list would leave the admin groups with no member (name a standing admin, or set allowEmpty: true)"}}
	}
	return nil
}
