package doctor

import (
	"encoding/json"
	"fmt"
	"strings"
)

// AppControl is the running agent's application control, as GET
// /api/v1/status reports it (absent when the agent runs without it).
type AppControl struct {
	Active      bool     `json:"active"`
	Mounts      []string `json:"mounts"`
	Events      uint64   `json:"events"`
	Fallback    uint64   `json:"fallback"`
	IgnoreMarks uint64   `json:"ignoreMarks"`
}

// appControlWanted says why the desired state turns application control
// on ("" when it does not): an ApplicationControl policy that is not off,
// or an allow-list default.
func (e *Env) appControlWanted() string {
	n := 0
	for _, raw := range e.Data.Policies {
		var p struct{ Type, Status string }
		if json.Unmarshal(raw, &p) == nil && p.Type == "ApplicationControl" && p.Status != "off" {
			n++
		}
	}
	def := e.settings().ApplicationControl.Default
	switch {
	case n > 0:
		return fmt.Sprintf("%d ApplicationControl policies are in force", n)
	case def != "" && def != "allow":
		return "Settings applicationControl.default is " + def
	}
	return ""
}

// checkAppControl: policies that say a program must not run are only
// words unless the agent holds execs for them; an agent that is not root,
// or could not mark the filesystems, runs without saying so at every exec.
func checkAppControl(e *Env) Result {
	why := e.appControlWanted()
	switch {
	case why == "":
		return skip("no ApplicationControl policy in force")
	case e.Agent == nil:
		return skip(why + "; the agent is not running to enforce them (see service)")
	}
	ac := e.Data.AppControl
	if ac == nil {
		return fail(why+" but the agent does not run application control",
			"run the agent as root: fanotify permission events need CAP_SYS_ADMIN")
	}
	if !ac.Active {
		return fail(why+" but the agent watches no exec",
			`read the agent log for "application control not enforced": each of applicationControl.mounts must be a mount point, and the kernel needs fanotify permission events (CONFIG_FANOTIFY_ACCESS_PERMISSIONS)`)
	}
	return pass(fmt.Sprintf("%s; watching %s: %d execs answered by the agent (%d with the fallback), %d programs left to the kernel",
		why, strings.Join(ac.Mounts, ", "), ac.Events, ac.Fallback, ac.IgnoreMarks))
}
