package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"warden/audit"
	"warden/source"
	"warden/state"
)

func init() {
	var url, token, caFile string
	var force bool
	cmd := &cobra.Command{
		Use:   "register --backend URL --token TOKEN",
		Short: "register this agent with a backend (run it while the agent is stopped)",
		Long: `register sends the enrolment token to POST {URL}/register and keeps the agent id
and credential the backend issues in the encrypted store, never in a plain file.
The store admits one process at a time, so stop the agent first and start it
again afterwards. --token - reads the token from standard input, which keeps it
out of shell history and the process list.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if token == "-" {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("read token from stdin: %w", err)
				}
				token = strings.TrimSpace(line)
			}
			st, err := state.Open(filepath.Join(rootDir, "KeeperStorage"), state.Options{})
			if errors.Is(err, state.ErrLocked) {
				return fmt.Errorf("the agent is running (%w): stop it, register, then start it again", err)
			}
			if err != nil {
				return err
			}
			defer st.Close()
			aw, err := audit.NewWriter(st, audit.Options{})
			if err != nil {
				return err
			}
			defer aw.Close()
			reg, err := source.Register(context.Background(), st, aw,
				source.RegisterOptions{URL: url, Token: token, CAFile: caFile, Force: force})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "registered with %s as agent %s (group %s)\n", reg.URL, reg.AgentID, reg.Group)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&url, "backend", "", "backend base URL, e.g. https://backend.example/v1")
	f.StringVar(&token, "token", "", "enrolment token (- reads it from stdin)")
	f.StringVar(&caFile, "ca-file", "", "CA certificate (PEM) to verify the backend with, instead of the system roots")
	f.BoolVar(&force, "force", false, "replace an existing registration")
	cmd.MarkFlagRequired("backend")
	cmd.MarkFlagRequired("token")
	rootCmd.AddCommand(cmd)
}
