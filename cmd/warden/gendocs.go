package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// gen-docs writes the man pages and shell completions the Debian package
// ships (`make man`, `make deb`). Hidden: it is a build step, not an
// operator's command.
func init() {
	cmd := &cobra.Command{
		Use:    "gen-docs man|bash|zsh|fish DIR|FILE",
		Short:  "Write man pages (cobra/doc) or a shell completion script",
		Hidden: true,
		Args:   cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			root.DisableAutoGenTag = true
			// The packaged pages show the packaged default, not the builder's.
			if f := root.PersistentFlags().Lookup("root"); f != nil {
				f.DefValue = "/opt/warden"
			}
			switch args[0] {
			case "man":
				if err := os.MkdirAll(args[1], 0o755); err != nil {
					return err
				}
				return doc.GenManTree(root, &doc.GenManHeader{Title: "WARDEN", Section: "1", Source: "warden", Manual: "warden manual"}, args[1])
			case "bash":
				return root.GenBashCompletionFileV2(args[1], true)
			case "zsh":
				return root.GenZshCompletionFile(args[1])
			case "fish":
				return root.GenFishCompletionFile(args[1], true)
			}
			return usageErr(fmt.Errorf("gen-docs %s: want man, bash, zsh or fish", args[0]))
		},
	}
	rootCmd.AddCommand(cmd)
}
