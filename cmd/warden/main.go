// Command warden is the endpoint privilege-management agent and its
// operator CLI. This package parses flags and wires packages together; the
// logic lives in the packages it calls.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"warden/buildinfo"
	"warden/cmd/internal/rootdir"
)

// Exit codes shared by every command (DESIGN.md, CLI).
const (
	exitOK      = 0
	exitBad     = 1 // the answer is bad news: drift open, validation failed
	exitUsage   = 2 // usage error
	exitNoAgent = 3 // no agent reachable
)

// exitError carries an exit code out of a command's RunE.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// badNews makes err exit with code 1.
func badNews(err error) error { return &exitError{code: exitBad, err: err} }

var rootDir string

var rootCmd = &cobra.Command{
	Use:           "warden",
	Short:         "warden keeps an endpoint at the security state its administrators declared",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	rootCmd.PersistentFlags().StringVar(&rootDir, "root", rootdir.Default(), "agent root folder (default from $WARDEN_ROOT)")
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	for _, a := range args {
		if a == "--version" { // read the build info only when asked: start-up stays cheap
			rootCmd.Version = buildinfo.Get().String()
			rootCmd.SetVersionTemplate("warden {{.Version}}\n")
		}
	}
	fillExamples(rootCmd)
	rootCmd.SetArgs(args)
	err := rootCmd.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && ee.err.Error() != "" {
			fmt.Fprintln(os.Stderr, "warden:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "warden:", err)
	return exitUsage
}
