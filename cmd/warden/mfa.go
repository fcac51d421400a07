package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"warden/engine"
)

func init() {
	mfa := &cobra.Command{Use: "mfa", Short: "Manage TOTP enrolment for the mfa control"}
	mfa.AddCommand(&cobra.Command{
		Use:   "enroll USER",
		Short: "Create USER's TOTP secret and print its otpauth URI (shown once)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				OTPAuth string `json:"otpauth"`
			}
			if err := callAgent("POST", "/api/v1/mfa/"+args[0]+"/enroll", []byte("{}"), &out); err != nil {
				return err
			}
			fmt.Println(out.OTPAuth)
			return nil
		},
	})
	rootCmd.AddCommand(mfa)

	var grantsJSON bool
	grants := &cobra.Command{
		Use:   "grants",
		Short: "List time-limited elevation grants in force",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				Grants []engine.Grant `json:"grants"`
			}
			if err := callAgent("GET", "/api/v1/grants", nil, &out); err != nil {
				return err
			}
			if grantsJSON {
				return printJSON(os.Stdout, out)
			}
			tw := newTable(os.Stdout, "ID", "USER", "SCOPE", "POLICY", "EXPIRES")
			for _, g := range out.Grants {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", g.ID, g.User, g.Scope, g.Policy, fmtTime(g.ExpiresAt))
			}
			return tw.Flush()
		},
	}
	bindOutput(grants, &grantsJSON)
	rootCmd.AddCommand(grants)
}
