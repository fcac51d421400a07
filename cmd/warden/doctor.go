package main

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"warden/agent"
	"warden/doctor"
	"warden/state"
)

func init() {
	var strict bool
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine against the hardening checklist (pass, warn or fail, with remedies)",
		Long: `doctor runs the reference pages' "Security Hardening" checklist against the agent
under --root: the service, listeners (read from /proc/net/tcp and tcp6), a real TLS
1.1 handshake, path security, Settings (AllowedHosts, AlternativeSignatures,
certificate password and expiry, log level, audit forwarding, backend
registration), the audit chain, sudoers drop-ins, LeastPrivilege admin groups and
the clock. It works with the agent stopped (reading files, /proc and the store)
and running (asking its API too). Exit 0 unless a check fails; with --strict,
warnings fail too.`,
		Example: `  sudo warden doctor
  sudo warden doctor -o json --strict`,
		Args: cobra.NoArgs,
	}
	out := addOutput(cmd)
	cmd.Flags().BoolVar(&strict, "strict", false, "fail (exit 1) on warnings too")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		asJSON, err := out.JSON()
		if err != nil {
			return err
		}
		env := &doctor.Env{Root: rootDir}
		if info, err := agent.ReadInfo(rootDir); err == nil && syscall.Kill(info.PID, 0) == nil {
			env.AgentPID, env.APIAddr = info.PID, info.API
			if c, err := newClient(); err == nil {
				env.Agent = c
			}
		}
		var note string
		if env.Agent != nil {
			env.GatherFromAgent()
		} else if err := env.GatherFromStore(); err != nil {
			if errors.Is(err, state.ErrLocked) {
				note = "an agent holds the store but did not answer; store checks skipped"
			} else {
				note = "store not read: " + err.Error()
			}
		}
		rs := doctor.Run(env)
		w := cmd.OutOrStdout()
		if asJSON {
			if err := printJSON(w, map[string]any{"results": rs, "failed": doctor.Failed(rs, strict), "note": note}); err != nil {
				return err
			}
		} else {
			tw := newTable(w, "CHECK", "STATUS", "MESSAGE", "REMEDY")
			for _, r := range rs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Check, strings.ToUpper(string(r.Status)), r.Message, r.Remedy)
			}
			tw.Flush()
			if note != "" {
				fmt.Fprintln(w, "note:", note)
			}
		}
		if doctor.Failed(rs, strict) {
			return badNews(errors.New("doctor found problems"))
		}
		return nil
	}
	rootCmd.AddCommand(cmd)
}

// Get lets doctor ask the agent (doctor.API).
func (c *client) Get(path string, out any) error { return c.call(http.MethodGet, path, nil, out) }
