package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"warden/engine"
	"warden/policy"
)

func init() {
	var req policy.Request
	var file string
	var explain, asJSON bool
	var groups string
	var target string
	cmd := &cobra.Command{
		Use:   "eval --user U --app PATH [...]",
		Short: "Ask the local agent's policy engine for a decision, with the reasons",
		Long: "eval sends one request to POST /api/v1/evaluate and prints the decision, the\n" +
			"deciding policy and every policy that matched. --explain adds the filters that did\n" +
			"and did not match. Exit 0 when the effective decision is allow, 1 otherwise.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var body []byte
			if file != "" {
				var err error
				if body, err = os.ReadFile(file); err != nil {
					return err
				}
			} else {
				if groups != "" {
					req.Groups = strings.Split(groups, ",")
				}
				if target != "" {
					req.Target = &policy.Target{Path: target}
				}
				body, _ = json.Marshal(&req)
			}
			path := "/api/v1/evaluate"
			if explain {
				path += "?explain=true"
			}
			var raw json.RawMessage
			if err := callAgent("POST", path, body, &raw); err != nil {
				return err
			}
			var res engine.Result
			if err := json.Unmarshal(raw, &res); err != nil {
				return err
			}
			if asJSON {
				os.Stdout.Write(raw)
			} else {
				printDecision(res)
			}
			if res.Effective != policy.Allow {
				return badNews(fmt.Errorf("effective decision: %s", res.Effective))
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "request as JSON (the body of POST /api/v1/evaluate)")
	f.StringVar(&req.User, "user", "", "user asking")
	f.StringVar(&groups, "groups", "", "the user's groups, comma-separated")
	f.StringVar(&req.Machine, "machine", "", "machine name")
	f.StringVar(&req.SessionID, "session", "", "session id")
	f.StringVar(&req.Action, "action", "elevate", "elevate, file-access, command or exec (ApplicationControl)")
	f.StringVar(&req.Application.Path, "app", "", "application path")
	f.StringVar(&req.Application.SHA256, "sha256", "", "application SHA-256")
	f.StringVar(&req.Application.CommandLine, "cmdline", "", "command line")
	f.StringVar(&req.Application.Publisher, "publisher", "", "publisher")
	f.StringVar(&req.Application.Parent, "parent", "", "parent process path")
	f.StringVar(&target, "target", "", "target file path (file-access)")
	f.StringVar(&req.Justification, "justification", "", "justification text")
	f.StringVar(&req.MFACode, "mfa-code", "", "current TOTP code")
	f.BoolVar(&explain, "explain", false, "show which filters matched")
	bindOutput(cmd, &asJSON)
	rootCmd.AddCommand(cmd)
}

func printDecision(r engine.Result) {
	fmt.Printf("decision:  %s\neffective: %s\nmode:      %s\n", r.Decision.Decision, r.Effective, r.Mode)
	if r.Policy != "" {
		fmt.Printf("policy:    %s\n", r.Policy)
	}
	fmt.Printf("matched:   %s\nreason:    %s\n", strings.Join(r.Matched, ", "), r.Reason)
	if r.ApprovalID != "" {
		fmt.Printf("approval:  %s (pending; approvers act with `warden approvals approve %s`)\n", r.ApprovalID, r.ApprovalID)
	}
	if r.GrantID != "" {
		fmt.Printf("grant:     %s until %s\n", r.GrantID, fmtTime(*r.GrantExpiresAt))
	} else if r.DurationSeconds > 0 {
		// A decision asked over the API changes nothing on the machine.
		fmt.Printf("duration:  %d s (not granted here: only requests over the user socket get grants)\n", r.DurationSeconds)
	}
	if r.Explain != nil {
		tw := newTable(os.Stdout)
		fmt.Fprintln(tw, "\nPOLICY\tFILTER\tMATCHED\tDETAIL")
		for _, p := range r.Explain.Policies {
			for _, f := range p.Filters {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\n", p.Policy, f.Filter, f.Matched, f.Detail)
			}
		}
		tw.Flush()
	}
}
