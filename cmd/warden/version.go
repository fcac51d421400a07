package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"warden/buildinfo"
)

func init() {
	rootCmd.Version = "" // set lazily: --version reads the build info only when asked
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print warden's version, VCS commit and commit time",
		Example: `  warden version
  warden version -o json`,
		Args: cobra.NoArgs,
	}
	out := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		asJSON, err := out.JSON()
		if err != nil {
			return err
		}
		bi := buildinfo.Get()
		if asJSON {
			return printJSON(cmd.OutOrStdout(), bi)
		}
		tw := newTable(cmd.OutOrStdout())
		fmt.Fprintf(tw, "version:\t%s\ncommit:\t%s\nmodified:\t%t\ncommit time:\t%s\ngo:\t%s\n", bi.Version, bi.Commit, bi.Modified, bi.Time, bi.GoVersion)
		return tw.Flush()
	}
	rootCmd.AddCommand(cmd)
}
