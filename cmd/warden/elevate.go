package main

import (
	"errors"

	"github.com/spf13/cobra"

	"warden/elevate"
	userclient "warden/elevate/client"
	"warden/elevate/wire"
)

// exitWith ends the command with code and no further message.
func exitWith(code int) error {
	if code == 0 {
		return nil
	}
	return &exitError{code: code, err: errors.New("")}
}

// dialAgent connects to the user socket under --root.
func dialAgent() (*userclient.Client, error) {
	cl, err := userclient.Dial(rootDir)
	if err != nil {
		return nil, &exitError{code: exitNoAgent, err: err}
	}
	return cl, nil
}

func init() {
	var o userclient.ElevateOptions
	cmd := &cobra.Command{
		Use:   "elevate [--reason TEXT] [--no-wait] -- CMD [ARGS...]",
		Short: "Run CMD as root if policy allows it (exit: CMD's code, 1 refused, 75 approval pending)",
		Long: "elevate asks the local agent, over its user socket, to run CMD as root with your\n" +
			"terminal. The agent identifies you from the kernel, resolves CMD itself (an absolute\n" +
			"path, or a bare name on " + elevate.SecurePath + "),\n" +
			"and runs it only if policy allows; it asks for a justification, an MFA code or an\n" +
			"approval when the policy says so. See docs/elevation.md.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := dialAgent()
			if err != nil {
				return err
			}
			defer cl.Close()
			o.Argv = args
			return exitWith(cl.Elevate(o))
		},
	}
	cmd.Flags().SetInterspersed(false) // flags after CMD are CMD's
	cmd.Flags().StringVar(&o.Reason, "reason", "", "justification, for policies that ask for one (required without a terminal)")
	cmd.Flags().BoolVar(&o.NoWait, "no-wait", false, "when an approval is needed, request it and exit 75 instead of waiting")
	rootCmd.AddCommand(cmd)
}

// socketCall sends one request over the user socket and returns its
// result, turning the agent's refusal into the exit code it names.
func socketCall(m *wire.Message) ([]byte, error) {
	cl, err := dialAgent()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	data, code, err := cl.Call(m)
	if err != nil {
		if err.Error() == "" {
			return nil, exitWith(code)
		}
		return nil, &exitError{code: code, err: err}
	}
	return data, nil
}
