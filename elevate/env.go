package elevate

import (
	"strconv"
	"strings"

	"warden/elevate/wire"
)

// ResetEnv builds an elevated command's environment the way sudo's
// env_reset does: the caller's locale and terminal type only (values with
// '/' or '%' dropped, as sudo's env_check does, so they cannot name a file
// or a format), then a fixed root environment, SUDO_* naming the caller and
// SUDO_COMMAND the command line (the resolved path, then the arguments, as
// sudo sets it). Nothing else of the caller's (LD_*, PATH, IFS, ...) gets
// through.
func ResetEnv(caller []string, a *Actor, path string, args []string) []string {
	out := make([]string, 0, len(caller)+8)
	seen := map[string]bool{}
	for _, kv := range caller {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !wire.KeepEnv(k) || seen[k] || strings.ContainsAny(v, "/%") || len(v) > 256 {
			continue
		}
		seen[k] = true
		out = append(out, k+"="+v)
	}
	return append(out,
		"PATH="+SecurePath,
		"HOME=/root",
		"SHELL=/bin/sh",
		"USER=root",
		"LOGNAME=root",
		"SUDO_USER="+a.Name,
		"SUDO_UID="+strconv.FormatUint(uint64(a.UID), 10),
		"SUDO_GID="+strconv.FormatUint(uint64(a.GID), 10),
		"SUDO_COMMAND="+strings.Join(append([]string{path}, args...), " "),
	)
}
