package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"warden/schema"
)

func init() {
	var asJSON bool
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the local agent's generation, bundle version and controllers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := callAgent("GET", "/api/v1/status", nil, &raw); err != nil {
				return err
			}
			if asJSON {
				_, err := os.Stdout.Write(raw)
				return err
			}
			var st struct {
				Generation    uint64 `json:"generation"`
				BundleVersion int64  `json:"bundleVersion"`
				Source        string `json:"source"`
				Documents     int    `json:"documents"`
				Audit         *struct {
					OK           bool   `json:"ok"`
					Failures     uint64 `json:"failures"`
					FailingSince string `json:"failingSince"`
					LastError    string `json:"lastError"`
				} `json:"audit"`
				Controllers []struct {
					Name       string `json:"name"`
					QueueDepth int    `json:"queueDepth"`
					LastError  string `json:"lastError"`
				} `json:"controllers"`
				Plugins []struct {
					ID       string `json:"id"`
					State    string `json:"state"`
					PID      int    `json:"pid"`
					Restarts int    `json:"restarts"`
					Error    string `json:"error"`
				} `json:"plugins"`
			}
			if err := json.Unmarshal(raw, &st); err != nil {
				return err
			}
			fmt.Printf("generation %d, bundle version %d, source %q, %d documents\n", st.Generation, st.BundleVersion, st.Source, st.Documents)
			if a := st.Audit; a != nil {
				if a.OK {
					fmt.Printf("audit: ok (%d store failures since start)\n", a.Failures)
				} else {
					fmt.Printf("audit: UNAVAILABLE since %s, audited actions are refused: %s\n", a.FailingSince, a.LastError)
				}
			}
			if len(st.Controllers) > 0 {
				tw := newTable(os.Stdout)
				fmt.Fprintln(tw, "CONTROLLER\tQUEUE\tLAST ERROR")
				for _, c := range st.Controllers {
					fmt.Fprintf(tw, "%s\t%d\t%s\n", c.Name, c.QueueDepth, c.LastError)
				}
				tw.Flush()
			}
			if len(st.Plugins) > 0 {
				tw := newTable(os.Stdout)
				fmt.Fprintln(tw, "\nPLUGIN\tSTATE\tPID\tRESTARTS\tERROR")
				for _, p := range st.Plugins {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", p.ID, p.State, p.PID, p.Restarts, p.Error)
				}
				tw.Flush()
			}
			return nil
		},
	}
	bindOutput(status, &asJSON)
	rootCmd.AddCommand(status)

	var file string
	apply := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Apply one document to the local agent (admin); audited as ADMIN_ACTION",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			doc, err := schema.Validate(file, data)
			if err != nil {
				return badNews(err)
			}
			var meta struct {
				Generation uint64 `json:"generation"`
			}
			if err := callAgent("PUT", "/api/v1/desired/"+doc.Kind+"/"+doc.ID, data, &meta); err != nil {
				return err
			}
			fmt.Printf("applied %s as generation %d\n", doc.Key(), meta.Generation)
			return nil
		},
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "document to apply (JSON)")
	apply.MarkFlagRequired("file")
	rootCmd.AddCommand(apply)
}
