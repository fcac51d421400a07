package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"warden/api"
	"warden/audit"
	"warden/state"
)

func init() {
	var asJSON, follow bool
	var typ, since, user string
	var limit int
	list := &cobra.Command{
		Use:   "audit",
		Short: "Show audit events from the local agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if typ != "" {
				q.Set("type", typ)
			}
			if since != "" {
				q.Set("since", since)
			}
			if user != "" {
				q.Set("user", user)
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			w := bufio.NewWriter(os.Stdout)
			defer w.Flush()
			tw := newTable(w)
			switch {
			case asJSON:
			case follow:
				fmt.Fprintf(w, "%-6s %-20s %-30s %-8s %-10s %s\n", "SEQ", "TIME", "TYPE", "SEVERITY", "COMPONENT", "TARGET")
			default:
				fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tSEVERITY\tCOMPONENT\tTARGET")
			}
			print := func(raw []byte) {
				if asJSON {
					w.Write(raw)
					w.WriteByte('\n')
					return
				}
				var e audit.Event
				json.Unmarshal(raw, &e)
				if follow { // lines come one at a time: fixed widths, not a table
					fmt.Fprintf(w, "%-6d %-20s %-30s %-8s %-10s %s\n", e.Seq, fmtTime(e.Time), e.Type, e.Severity, e.Component, target(e))
					return
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", e.Seq, fmtTime(e.Time), e.Type, e.Severity, e.Component, target(e))
			}
			if follow {
				q.Set("follow", "true")
				return c.stream("/api/v1/audit?"+q.Encode(), func(line []byte) {
					print(line)
					tw.Flush()
					w.Flush()
				})
			}
			for {
				var page struct {
					Events []json.RawMessage `json:"events"`
					Next   string            `json:"next"`
				}
				if err := c.call("GET", "/api/v1/audit?"+q.Encode(), nil, &page); err != nil {
					return err
				}
				for _, raw := range page.Events {
					print(raw)
				}
				if page.Next == "" {
					break
				}
				q.Set("cursor", page.Next)
			}
			return tw.Flush()
		},
	}
	bindOutput(list, &asJSON) // JSON is NDJSON: one event a line
	list.Flags().BoolVar(&follow, "follow", false, "keep printing new events")
	list.Flags().StringVar(&typ, "type", "", "only these types (comma-separated)")
	list.Flags().StringVar(&since, "since", "", "only events since RFC 3339 time or duration ago (1h)")
	list.Flags().StringVar(&user, "user", "", "only events about this user")
	list.Flags().IntVar(&limit, "limit", 0, "events per page")

	list.AddCommand(&cobra.Command{
		Use:   "verify",
		Short: "Walk the audit hash chain and report the first break",
		Long: `Walk the audit hash chain and report the first break. With the agent
stopped, the store is read directly; while an agent holds it, the running
agent walks it (GET /api/v1/audit/verify).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			st, err := state.Open(filepath.Join(rootDir, "KeeperStorage"), state.Options{MustExist: true})
			if errors.Is(err, state.ErrLocked) {
				var ans api.VerifyAnswer
				if err := callAgent(http.MethodGet, "/api/v1/audit/verify", nil, &ans); err != nil {
					return err
				}
				if !ans.Intact {
					return badNews(fmt.Errorf("after %d good events: %w", ans.Events,
						&audit.BreakError{Seq: ans.BrokenAt, Reason: ans.Reason}))
				}
				fmt.Fprintf(out, "ok: %d events, chain intact (checked by the running agent)\n", ans.Events)
				return nil
			}
			if err != nil {
				return connErr(err)
			}
			defer st.Close()
			n, err := audit.Verify(st)
			if err != nil {
				return badNews(fmt.Errorf("after %d good events: %w", n, err))
			}
			fmt.Fprintf(out, "ok: %d events, chain intact\n", n)
			return nil
		},
	})

	var exportSince, exportType string
	export := &cobra.Command{
		Use:   "export",
		Short: "Export audit events as NDJSON for a SIEM (works with the agent stopped)",
		Long: `export prints audit events as NDJSON, oldest first, each with its sequence number
and chain hash. With the agent stopped the store is read directly (as root); while
an agent holds it, the running agent is asked.`,
		Example: `  sudo warden audit export --since 24h > audit.ndjson
  sudo systemctl stop warden && sudo warden audit export --type CONFIG_CHANGED,ADMIN_ACTION`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var st *state.Store
			_, err := os.Lstat(filepath.Join(rootDir, "KeeperStorage", state.DBFile))
			if err == nil { // never create a store where there is none
				st, err = state.Open(filepath.Join(rootDir, "KeeperStorage"), state.Options{})
			}
			if errors.Is(err, state.ErrLocked) || errors.Is(err, os.ErrNotExist) {
				asJSON, typ, since = true, exportType, exportSince
				return list.RunE(cmd, nil)
			}
			if err != nil {
				return connErr(err)
			}
			defer st.Close()
			return exportStore(cmd, st, exportType, exportSince)
		},
	}
	export.Flags().StringVar(&exportSince, "since", "", "only events since RFC 3339 time or duration ago (24h)")
	export.Flags().StringVar(&exportType, "type", "", "only these types (comma-separated)")
	list.AddCommand(export)
	rootCmd.AddCommand(list)
}

func target(e audit.Event) string {
	t := e.TargetInfo
	switch {
	case t == nil:
		return ""
	case t.Path != "":
		return t.Path
	case t.Kind != "":
		return t.Kind + "/" + t.ID
	}
	return t.ID
}

// exportStore writes the store's audit events as NDJSON, page by page.
func exportStore(cmd *cobra.Command, st *state.Store, types, since string) error {
	f := audit.Filter{Limit: 10000}
	if types != "" {
		f.Types = strings.Split(types, ",")
	}
	if since != "" {
		t, err := time.Parse(time.RFC3339, since)
		if err != nil {
			d, derr := time.ParseDuration(since)
			if derr != nil || d < 0 {
				return usageErr(fmt.Errorf("--since: want RFC 3339 or a duration such as 24h, got %q", since))
			}
			t = time.Now().Add(-d)
		}
		f.Since = t
	}
	w := bufio.NewWriter(cmd.OutOrStdout())
	defer w.Flush()
	for {
		evs, next, err := audit.Query(st, f)
		if err != nil {
			return err
		}
		for _, e := range evs {
			w.Write(e.Raw)
			w.WriteByte('\n')
		}
		if next == "" {
			return nil
		}
		after, err := strconv.ParseUint(next, 10, 64)
		if err != nil {
			return fmt.Errorf("audit cursor %q: %w", next, err)
		}
		f.After = after
	}
}
