// Package buildinfo says which build of warden is running: the module
// version, the VCS commit and its time, as the Go toolchain stamped them
// into the binary. It reads debug.ReadBuildInfo once and does nothing at
// package init, so the CLI's start-up stays cheap.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Info describes one build.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Time      string `json:"time"` // commit time, RFC 3339 UTC, as the toolchain recorded it
	Modified  bool   `json:"modified"`
	GoVersion string `json:"goVersion"`
}

var (
	once sync.Once
	info Info
)

// Get returns this binary's build information. Fields the toolchain did not
// record (a build with -buildvcs=false, a test binary) are "unknown".
func Get() Info {
	once.Do(func() { info = read() })
	return info
}

func read() Info {
	in := Info{Version: "unknown", Commit: "unknown", Time: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		in.Version = v
	} else if v == "(devel)" {
		in.Version = "devel"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Commit = s.Value
		case "vcs.time":
			in.Time = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		}
	}
	return in
}

// String is the one-line form `warden --version` prints.
func (i Info) String() string {
	s := i.Version + " (commit " + short(i.Commit)
	if i.Modified {
		s += ", modified"
	}
	return s + ", " + i.Time + ", " + i.GoVersion + ")"
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
