package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"warden/jobs"
)

func init() {
	jobCmd := &cobra.Command{Use: "job", Short: "Run jobs by hand, list them, read their run history",
		Example: "  warden job list\n  warden job run inventory --wait"}
	jobCmd.AddCommand(jobRunCmd(), jobListCmd(), jobHistoryCmd())
	rootCmd.AddCommand(jobCmd)
}

func jobRunCmd() *cobra.Command {
	var wait, asJSON bool
	cmd := &cobra.Command{
		Use:   "run ID [--wait]",
		Short: "Run a job now",
		Example: `  warden job run inventory
  warden job run inventory --wait -o json`,
		ValidArgsFunction: completeJobs,
		Long: "run queues a manual run of job ID and prints the run's id. With --wait it waits for the run to end, " +
			"prints each task's output, and exits 1 when the run did not succeed.",
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			id := args[0]
			var started struct{ Job, Run string }
			if err := callAgent("POST", "/api/v1/jobs/"+url.PathEscape(id)+"/run", []byte("{}"), &started); err != nil {
				return err
			}
			if !wait {
				if asJSON {
					return printJSON(os.Stdout, started)
				}
				fmt.Printf("run %s of job %s queued\n", started.Run, id)
				return nil
			}
			r, err := waitRun(id, started.Run)
			if err != nil {
				return err
			}
			if asJSON {
				printJSON(os.Stdout, r)
			} else {
				printRun(r)
			}
			if r.State != jobs.StateSucceeded {
				return badNews(fmt.Errorf("run %s %s: %s", r.ID, r.State, r.Error))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the run to end and print its output")
	bindOutput(cmd, &asJSON)
	return cmd
}

// waitRun polls the run's record until it has ended.
func waitRun(job, runID string) (*jobs.Run, error) {
	c, err := newClient() // one connection for every poll
	if err != nil {
		return nil, err
	}
	path := "/api/v1/jobs/" + url.PathEscape(job) + "/runs?run=" + url.QueryEscape(runID)
	for {
		var out struct{ Runs []*jobs.Run }
		err := c.call("GET", path, nil, &out)
		var ae *apiErr
		switch {
		case errors.As(err, &ae) && ae.status == 404: // queued: no record yet
		case err != nil:
			return nil, err
		case len(out.Runs) == 1 && out.Runs[0].End != nil:
			return out.Runs[0], nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func printRun(r *jobs.Run) {
	fmt.Printf("run %s of job %s: %s (trigger %s, %s)\n", r.ID, r.Job, r.State, r.Trigger, time.Duration(r.DurationMs)*time.Millisecond)
	if r.Error != "" {
		fmt.Printf("error: %s\n", r.Error)
	}
	for _, t := range r.Tasks {
		fmt.Printf("--- task %d %s: %s%s\n", t.Index, t.Command, t.State, exitText(t.ExitCode, t.Signal))
		if t.Error != "" && t.State != jobs.TaskSkipped {
			fmt.Printf("    %s\n", t.Error)
		}
		os.Stdout.WriteString(t.Output)
		if t.Output != "" && !strings.HasSuffix(t.Output, "\n") {
			fmt.Println()
		}
		if t.OutputTruncatedBytes > 0 {
			fmt.Printf("[%d more bytes of output dropped]\n", t.OutputTruncatedBytes)
		}
	}
}

func exitText(code *int, signal string) string {
	switch {
	case signal != "":
		return " (" + signal + ")"
	case code != nil:
		return fmt.Sprintf(" (exit %d)", *code)
	}
	return ""
}

func jobListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the jobs with their next and last run",
		Example: `  warden job list
  warden job list -o json --local`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			var raw json.RawMessage
			if err := callAgent("GET", "/api/v1/jobs", nil, &raw); err != nil {
				return err
			}
			if asJSON {
				_, err := os.Stdout.Write(raw)
				return err
			}
			var out struct{ Jobs []jobs.JobStatus }
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			tw := newTable(os.Stdout)
			fmt.Fprintln(tw, "ID\tENABLED\tSTATE\tNEXT RUN\tLAST RUN\tLAST STATE\tTRIGGERS")
			for _, j := range out.Jobs {
				next, last, lastState := "-", "-", "-"
				if j.NextRun != nil {
					next = fmtTime(*j.NextRun) + " (" + j.NextTrigger + ")"
				}
				if j.LastRun != nil {
					last = fmtTime(j.LastRun.Start)
					lastState = j.LastRun.State + exitText(j.LastRun.ExitCode, j.LastRun.Signal)
				}
				fmt.Fprintf(tw, "%s\t%v\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Enabled, j.State, next, last, lastState, strings.Join(j.Triggers, "; "))
			}
			return tw.Flush()
		},
	}
	bindOutput(cmd, &asJSON)
	return cmd
}

func jobHistoryCmd() *cobra.Command {
	var asJSON, output bool
	var limit int
	cmd := &cobra.Command{
		Use:   "history ID",
		Short: "Show a job's runs, newest first (kept 15 days)",
		Example: `  warden job history inventory --limit 5
  warden job history inventory --with-output`,
		ValidArgsFunction: completeJobs,
		Args:              cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			q := url.Values{"limit": {fmt.Sprint(limit)}}
			if !output && !asJSON {
				q.Set("output", "false")
			}
			var raw json.RawMessage
			if err := callAgent("GET", "/api/v1/jobs/"+url.PathEscape(args[0])+"/runs?"+q.Encode(), nil, &raw); err != nil {
				return err
			}
			if asJSON {
				_, err := os.Stdout.Write(raw)
				return err
			}
			var out struct{ Runs []*jobs.Run }
			if err := json.Unmarshal(raw, &out); err != nil {
				return err
			}
			if output {
				for _, r := range out.Runs {
					printRun(r)
				}
				return nil
			}
			tw := newTable(os.Stdout)
			fmt.Fprintln(tw, "RUN\tTRIGGER\tSTATE\tSTART\tDURATION\tEXIT\tERROR")
			for _, r := range out.Runs {
				trig := r.Trigger
				if r.Event != "" {
					trig += ":" + r.Event
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, trig, r.State, fmtTime(r.Start),
					time.Duration(r.DurationMs)*time.Millisecond, strings.TrimSpace(exitText(r.ExitCode, r.Signal)), r.Error)
			}
			return tw.Flush()
		},
	}
	bindOutput(cmd, &asJSON) // JSON carries the task output
	cmd.Flags().BoolVar(&output, "with-output", false, "print every run with its tasks' output")
	cmd.Flags().IntVar(&limit, "limit", 20, "runs to show (1..500)")
	return cmd
}
