// Command front is what is installed as `warden`: a small launcher in
// front of the full CLI (cmd/warden, installed beside it as warden-core).
//
// `warden elevate` is run by ordinary users many times a day and is
// measured against `sudo`, which starts in a few milliseconds. The full
// CLI links the agent (CUE, bbolt, the MQTT broker, Prometheus, ...), and
// Go runs every linked package's initialisation before main: 5 to 6 ms
// before it can even parse its arguments. The front links only the user
// socket's client (elevate/client, elevate/wire) and the standard library,
// so it handles `warden elevate` itself, and execs warden-core, with the
// same arguments, for everything else.
//
// The rule that keeps the two from disagreeing: the front handles only the
// command lines it understands completely (below); anything else, help and
// every error included, goes to warden-core, which understands the same
// line the same way, only later.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"warden/cmd/internal/rootdir"
	"warden/elevate/client"
	"warden/elevate/wire"
)

// coreName is the full CLI, found next to the front's own executable.
const coreName = "warden-core"

func main() {
	if root, o, ok := parseElevate(os.Args[1:]); ok {
		os.Exit(elevate(root, o))
	}
	os.Exit(execCore(os.Args))
}

// parseElevate recognises
//
//	[--root DIR] elevate [--root DIR] [--reason TEXT] [--no-wait] [--] CMD [ARGS...]
//
// (each flag also as --flag=value), the way cobra parses it for the full
// CLI: flags stop at the first argument that is not one, or after "--".
// ok is false for any other line.
func parseElevate(args []string) (root string, o client.ElevateOptions, ok bool) {
	var rootSet, sub bool // --root given; "elevate" seen
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(a, "=")
		switch {
		case a == "elevate" && !sub:
			sub = true
			continue
		case a == "--" && sub:
			o.Argv = args[i+1:]
		case name == "--root" || (name == "--reason" && sub):
			if !hasValue {
				if i+1 >= len(args) {
					return "", o, false
				}
				i++
				value = args[i]
			}
			if name == "--root" {
				root, rootSet = value, true
			} else {
				o.Reason = value
			}
			continue
		case a == "--no-wait" && sub:
			o.NoWait = true
			continue
		case strings.HasPrefix(a, "-") || !sub:
			return "", o, false // a flag the front does not know, or another command
		default:
			o.Argv = args[i:]
		}
		break
	}
	if !sub || len(o.Argv) == 0 {
		return "", o, false
	}
	if !rootSet {
		root = rootdir.Default()
	}
	return root, o, true
}

// elevate is `warden elevate`: the same client, messages and exit codes as
// warden-core's.
func elevate(root string, o client.ElevateOptions) int {
	cl, err := client.Dial(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "warden:", err)
		return wire.ExitNoAgent
	}
	defer cl.Close()
	return cl.Elevate(o)
}

// execCore replaces this process with warden-core, same arguments and
// environment (so a service manager still sees one process: the agent's
// pid does not change). It returns only when that fails.
func execCore(argv []string) int {
	self, err := os.Executable() // /proc/self/exe: links resolved, e.g. /usr/bin/warden -> /usr/lib/warden/warden
	if err != nil {
		fmt.Fprintln(os.Stderr, "warden: cannot find its own executable:", err)
		return 2
	}
	core := filepath.Join(filepath.Dir(self), coreName)
	err = unix.Exec(core, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "warden: %s: %v (the full CLI is installed beside this launcher)\n", core, err)
	return 2
}
