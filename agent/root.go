package agent

import (
	"fmt"
	"os"
	"path/filepath"

	"warden/pki"
)

// Folders of the agent root and the modes they are created with
// (DESIGN.md, permission model). The permissions controller keeps them so.
var folders = []struct {
	name string
	mode os.FileMode
}{
	{"KeeperStorage", 0o700},
	{"certs", 0o700},
	{"trust", 0o700},
	{"policies", 0o700},
	{"Plugins", 0o750},
	{"Jobs", 0o750},
	{"inbox", 0o700},
	{"logs", 0o700},
	{"run", 0o755}, // holds the user socket: anyone may reach it
}

// prepareRoot creates the root and its folders, and refuses a root or
// KeeperStorage that others can write to: whoever can write there can
// replace the agent's state or keys.
func prepareRoot(root string) error {
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("create root %s: %w", root, err)
	}
	for _, p := range []string{root, filepath.Join(root, "KeeperStorage")} {
		st, err := os.Lstat(p)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return err
		}
		if st.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("%s is a symbolic link; refusing to start", p)
		}
		if st.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("%s is group- or world-writable (mode %04o); fix it with: chmod go-w %s", p, st.Mode().Perm(), p)
		}
	}
	for _, f := range folders {
		p := filepath.Join(root, f.name)
		if err := os.Mkdir(p, f.mode); err != nil && !os.IsExist(err) {
			return fmt.Errorf("create %s: %w", p, err)
		}
		if f.name == "run" {
			// A root made before the user socket existed has run/ 0700.
			if err := os.Chmod(p, f.mode); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkLoopback refuses any listen address but 127.0.0.1:PORT: the agent
// exposes nothing to the network, and its three listeners follow one rule
// (pki.CheckListenAddr), the broker's included.
func checkLoopback(flag, addr string) error {
	if err := pki.CheckListenAddr(addr); err != nil {
		return fmt.Errorf("--%s: %w", flag, err)
	}
	return nil
}
