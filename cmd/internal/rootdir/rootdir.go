// Package rootdir is the agent root the CLI uses when --root is not given:
// $WARDEN_ROOT, else /opt/warden for root, else ./.warden. Both the full
// CLI (cmd/warden) and the small front (cmd/front) ask it, so they always
// agree on which agent they talk to.
package rootdir

import (
	"os"
	"path/filepath"
)

// Default returns the root for a command line without --root.
func Default() string {
	if r := os.Getenv("WARDEN_ROOT"); r != "" {
		return r
	}
	if os.Geteuid() == 0 {
		return "/opt/warden"
	}
	abs, err := filepath.Abs(".warden")
	if err != nil {
		return ".warden"
	}
	return abs
}
