package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// output is the -o/--json/--local flag set every read command shares, so
// that they all print the same way: one table style, one time format.
type output struct {
	format string // table or json
	json   *bool  // --json, an alias of -o json
}

// localTimes is --local: times print in the local zone instead of UTC.
// One command runs per process, so one variable serves them all.
var localTimes bool

// addOutput registers -o table|json, --json and --local on cmd.
func addOutput(cmd *cobra.Command) *output { return bindOutput(cmd, new(bool)) }

// bindOutput registers -o table|json, --json (bound to asJSON) and --local
// on cmd; before the command runs, -o json sets *asJSON and an unknown -o
// value is a usage error (exit 2).
func bindOutput(cmd *cobra.Command, asJSON *bool) *output {
	o := &output{json: asJSON}
	f := cmd.Flags()
	f.StringVarP(&o.format, "output", "o", "table", "output format: table or json")
	f.BoolVar(asJSON, "json", false, "print JSON (same as -o json)")
	f.BoolVar(&localTimes, "local", false, "print times in the local time zone instead of UTC")
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"table", "json"}, cobra.ShellCompDirectiveNoFileComp))
	pre := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if _, err := o.JSON(); err != nil {
			return err
		}
		if pre != nil {
			return pre(c, args)
		}
		return nil
	}
	return o
}

// JSON reports whether the caller asked for JSON; an unknown -o value is
// a usage error (exit 2).
func (o *output) JSON() (bool, error) {
	switch {
	case o.format == "json":
		*o.json = true
		return true, nil
	case *o.json:
		return true, nil
	case o.format == "table" || o.format == "":
		return false, nil
	}
	return false, usageErr(fmt.Errorf("-o %q: want table or json", o.format))
}

// fmtTime formats t as RFC 3339, in UTC unless --local; the zero time is "-".
func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	if localTimes {
		return t.Local().Format(time.RFC3339)
	}
	return t.UTC().Format(time.RFC3339)
}

// newTable is the one table style: columns two spaces apart, upper-case
// headers. Call Flush when done.
func newTable(w io.Writer, headers ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, h := range headers {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, h)
	}
	if len(headers) > 0 {
		fmt.Fprintln(tw)
	}
	return tw
}

// usageErr makes err exit with code 2.
func usageErr(err error) error { return &exitError{code: exitUsage, err: err} }
