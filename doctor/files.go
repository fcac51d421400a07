package doctor

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// checkPaths is the page's "verify path security": the root tree and the
// binary (the folder holding it, and the front beside it) owned by root,
// with no group or world write. The user socket (run/warden.sock, 0666 by design) is the one
// exception. Symbolic links are reported, never followed.
func checkPaths(e *Env) Result {
	var bad []string
	note := func(p string, st fs.FileInfo) {
		if st.Mode()&fs.ModeSocket != 0 {
			return
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		switch {
		case st.Mode()&fs.ModeSymlink != 0 && p != e.Binary:
			bad = append(bad, p+" is a symbolic link")
		case sys != nil && sys.Uid != 0 && os.Geteuid() == 0:
			bad = append(bad, fmt.Sprintf("%s owned by uid %d", p, sys.Uid))
		case st.Mode().Perm()&0o022 != 0:
			bad = append(bad, fmt.Sprintf("%s mode %04o", p, st.Mode().Perm()))
		}
	}
	err := filepath.WalkDir(e.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", p, err))
			return nil
		}
		st, err := os.Lstat(p)
		if err == nil {
			note(p, st)
		}
		return nil
	})
	if err != nil {
		return fail(err.Error(), "create the root: reinstall the package or start the agent once")
	}
	if e.Binary != "" {
		bin, _ := filepath.EvalSymlinks(e.Binary)
		if bin == "" {
			bin = e.Binary
		}
		// The front installed beside it as warden (cmd/front) is what root
		// runs first (`warden agent` from the unit): it must be as safe.
		for _, p := range []string{bin, filepath.Dir(bin), filepath.Join(filepath.Dir(bin), "warden")} {
			if st, err := os.Lstat(p); err == nil {
				note(p, st)
			}
		}
	}
	if len(bad) > 0 {
		more := ""
		if len(bad) > 5 {
			more = fmt.Sprintf(" and %d more", len(bad)-5)
			bad = bad[:5]
		}
		return fail(strings.Join(bad, "; ")+more, "chown -R root:root "+e.Root+" && chmod -R go-w "+e.Root+" (and the same for "+e.Binary+")")
	}
	return pass(e.Root + " and " + e.Binary + ": owned by root, no group or world write")
}

// checkCertExpiry reads the served certificate (certs/server.pem, or the
// custom one Settings certificate.path names) and warns inside the
// rotation window, fails once expired.
func checkCertExpiry(e *Env) Result {
	s := e.settings()
	path := filepath.Join(e.Root, "certs", "server.pem")
	custom := s.Certificate.Path != ""
	if custom {
		path = s.Certificate.Path
		if !filepath.IsAbs(path) {
			path = filepath.Join(e.Root, path)
		}
	}
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) && !custom {
		return skip("no server certificate yet (the agent creates one at start)")
	}
	if err != nil {
		return fail(fmt.Sprintf("read %s: %v", path, err), "fix Settings certificate.path or restart the agent to issue a new certificate")
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return fail(path+" holds no PEM certificate", "replace "+path+" with the certificate the agent should serve")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return fail(fmt.Sprintf("%s: %v", path, err), "replace "+path+" with a valid certificate")
	}
	left := cert.NotAfter.Sub(e.Now())
	days := s.Certificate.RotateBeforeDays
	if days == 0 {
		days = 10
	}
	exp := cert.NotAfter.UTC().Format(time.RFC3339)
	switch {
	case left <= 0:
		return fail(path+" expired at "+exp, "rotate the certificate (custom: install a new one at "+path+"; otherwise restart the agent)")
	case left < time.Duration(days)*24*time.Hour:
		return warn(fmt.Sprintf("%s expires at %s, within %d days", path, exp, days), "rotate the certificate before it expires")
	}
	kind := "agent-issued"
	if custom {
		kind = "custom"
	}
	return pass(fmt.Sprintf("%s certificate valid until %s", kind, exp))
}
