package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"warden/state"
)

func init() {
	var asJSON, onlyOpen bool
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "List what drifted from the desired state and what the agent did about it",
		Long:  "drift lists open and recent drift records. Exit 1 while any drift is open or unresolved.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := "/api/v1/drift"
			if onlyOpen {
				path += "?open=true"
			}
			var raw json.RawMessage
			if err := callAgent("GET", path, nil, &raw); err != nil {
				return err
			}
			var out struct {
				Drift []state.DriftRecord `json:"drift"`
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			if asJSON {
				os.Stdout.Write(raw)
			} else {
				tw := newTable(os.Stdout, "KIND", "ID", "FIELD", "STATE", "DETECTED", "AGE", "ACTION")
				for _, r := range out.Drift {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Kind, r.Name, r.Field, r.State, fmtTime(r.DetectedAt),
						time.Since(r.DetectedAt).Round(time.Second), r.Action)
				}
				tw.Flush()
			}
			open := 0
			for _, r := range out.Drift {
				if r.State == state.DriftOpen || r.State == state.DriftUnresolved {
					open++
				}
			}
			if open > 0 {
				return badNews(fmt.Errorf("%d drift record(s) open or unresolved", open))
			}
			return nil
		},
	}
	bindOutput(cmd, &asJSON)
	cmd.Flags().BoolVar(&onlyOpen, "open", false, "only open and unresolved drift")
	rootCmd.AddCommand(cmd)
}
