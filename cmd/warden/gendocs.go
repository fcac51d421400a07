//go:build gendocs

package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// gen-docs writes the man pages the Debian package ships (`make man`,
// `make deb`). Hidden, and only in a binary built with -tags gendocs: it is
// a build step, not an operator's command, and cobra/doc's markdown
// renderer would cost every CLI start-up its package init.
func init() {
	cmd := &cobra.Command{
		Use:    "gen-docs man DIR",
		Short:  "Write the man pages (cobra/doc)",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			root.DisableAutoGenTag = true
			// The packaged pages show the packaged default, not the builder's.
			if f := root.PersistentFlags().Lookup("root"); f != nil {
				f.DefValue = "/opt/warden"
			}
			if args[0] != "man" {
				return usageErr(fmt.Errorf("gen-docs %s: want man", args[0]))
			}
			if err := os.MkdirAll(args[1], 0o755); err != nil {
				return err
			}
			return doc.GenManTree(root, &doc.GenManHeader{Title: "WARDEN", Section: "1", Source: "warden", Manual: "warden manual"}, args[1])
		},
	}
	rootCmd.AddCommand(cmd)
}
