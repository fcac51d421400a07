package main

import (
	"fmt"
	"net/url"
	"os"

	"github.com/spf13/cobra"

	"warden/engine"
)

func init() {
	mfa := &cobra.Command{Use: "mfa", Short: "Manage TOTP enrolment for the mfa control"}
	var force bool
	enroll := &cobra.Command{
		Use:   "enroll USER",
		Short: "Create USER's TOTP secret and print its otpauth URI (shown once); audited as ADMIN_ACTION",
		Long: `Create USER's TOTP secret and print its otpauth URI (shown once). A user who
already has a secret is refused unless --force is given (which replaces it:
the old authenticator stops working). USER is 1 to 64 letters, digits and
. _ @ - (not first). The enrolment is audited as ADMIN_ACTION.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := engine.ValidUserName(args[0]); err != nil {
				return usageErr(err)
			}
			var out struct {
				OTPAuth string `json:"otpauth"`
			}
			body := []byte(fmt.Sprintf(`{"force": %t}`, force))
			if err := callAgent("POST", "/api/v1/mfa/"+url.PathEscape(args[0])+"/enroll", body, &out); err != nil {
				return err
			}
			fmt.Println(out.OTPAuth)
			return nil
		},
	}
	enroll.Flags().BoolVar(&force, "force", false, "replace an existing secret")
	mfa.AddCommand(enroll)
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
