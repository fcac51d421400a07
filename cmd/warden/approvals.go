package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"warden/elevate"
	"warden/elevate/wire"
	"warden/engine"
)

// asAdmin reports whether this process can use the admin certificate;
// everyone else talks to the agent as themselves over the user socket.
func asAdmin() bool {
	f, err := os.Open(filepath.Join(rootDir, "certs", "admin-key.pem"))
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func init() {
	approvals := &cobra.Command{
		Use:   "approvals",
		Short: "List approvals, approve or deny them (as yourself, or as admin with the admin certificate)",
		Long: "approvals list shows the requests you may decide and your own; approve and deny\n" +
			"decide as you: the kernel says who you are, and you must be named by an Approver\n" +
			"document covering the policy and not be the requester. Whoever can read the\n" +
			"admin certificate decides as admin through the HTTPS API instead.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return listApprovals(os.Stdout, false) },
	}
	var listJSON bool
	list := &cobra.Command{
		Use: "list", Short: "List the approvals you may see", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return listApprovals(os.Stdout, listJSON) },
	}
	bindOutput(list, &listJSON)
	approvals.AddCommand(list)
	for _, verb := range []string{"approve", "deny"} {
		var reason string
		sub := &cobra.Command{
			Use:   verb + " ID [--reason TEXT]",
			Short: verb + " a pending approval",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var a engine.Approval
				if asAdmin() {
					body, _ := json.Marshal(map[string]string{"reason": reason})
					if err := callAgent("POST", "/api/v1/approvals/"+args[0]+"/"+verb, body, &a); err != nil {
						return err
					}
				} else {
					data, err := socketCall(&wire.Message{Type: wire.TypeApprovalsDecide, ID: args[0],
						Approve: verb == "approve", Reason: reason})
					if err != nil {
						return err
					}
					if err := json.Unmarshal(data, &a); err != nil {
						return err
					}
				}
				fmt.Printf("approval %s %s by %s\n", a.ID, a.State, a.DecidedBy)
				return nil
			},
		}
		sub.Flags().StringVar(&reason, "reason", "", "why, recorded with the decision")
		approvals.AddCommand(sub)
	}
	rootCmd.AddCommand(approvals)
}

func listApprovals(w io.Writer, asJSON bool) error {
	var out struct {
		Approvals []engine.Approval `json:"approvals"`
	}
	if asAdmin() {
		if err := callAgent("GET", "/api/v1/approvals", nil, &out); err != nil {
			return err
		}
	} else {
		data, err := socketCall(&wire.Message{Type: wire.TypeApprovalsList})
		if err != nil {
			return err
		}
		if err := json.Unmarshal(data, &out); err != nil {
			return err
		}
	}
	if asJSON {
		if out.Approvals == nil {
			out.Approvals = []engine.Approval{}
		}
		return printJSON(w, out)
	}
	tw := newTable(w, "ID", "STATE", "USER", "POLICY", "APPLICATION", "COMMAND LINE", "EXPIRES")
	for _, a := range out.Approvals {
		app := a.Application
		if a.Target != "" {
			app = a.Target
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.ID, a.State, a.User, a.Policy, app, a.CommandLine,
			fmtTime(a.ExpiresAt))
	}
	return tw.Flush()
}

func init() {
	var write bool
	var dur time.Duration
	var reason string
	cmd := &cobra.Command{
		Use:   "access [--write] [--for DURATION] [--reason TEXT] PATH",
		Short: "Ask for time-limited access to a file or folder (a POSIX ACL for you)",
		Long: "access asks the agent, over the user socket, for read (or --write) access to PATH\n" +
			"for DURATION. Policy decides (FileAccess policies), with a justification, an MFA\n" +
			"code or an approval when it asks for one; the agent then adds an ACL entry for you\n" +
			"and removes it at expiry. Exit 0 granted, 1 refused, 75 approval pending.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if dur < 0 || dur%time.Second != 0 {
				return fmt.Errorf("--for %s: a whole number of seconds, at least 0", dur)
			}
			data, err := socketCall(&wire.Message{Type: wire.TypeAccess, Path: args[0], Write: write,
				Seconds: int(dur / time.Second), Reason: reason})
			if err != nil {
				return err
			}
			var r elevate.AccessResult
			if err := json.Unmarshal(data, &r); err != nil {
				return err
			}
			until := "for this request"
			if r.ExpiresAt != nil {
				until = "until " + r.ExpiresAt.UTC().Format(time.RFC3339)
			}
			fmt.Printf("%s access to %s granted %s (grant %s, policy %s)\n", r.Access, r.Path, until, r.GrantID, r.Policy)
			return nil
		},
	}
	cmd.Flags().BoolVar(&write, "write", false, "ask for write access (read otherwise)")
	cmd.Flags().DurationVar(&dur, "for", 0, "how long (the policy's durationSeconds caps it; default: the policy's)")
	cmd.Flags().StringVar(&reason, "reason", "", "justification, for policies that ask for one (required without a terminal)")
	rootCmd.AddCommand(cmd)
}
