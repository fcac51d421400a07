package reconcile

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"warden/source"
)

func TestValidateExecutable(t *testing.T) {
	prog := []byte("#!/bin/sh\nexit 0\n")
	sum := sha256.Sum256(prog)
	sha := hex.EncodeToString(sum[:])
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	keyID := source.KeyID(pub)
	otherPub, otherPriv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	sig := ed25519.Sign(priv, prog)

	tests := []struct {
		name    string
		setup   func(t *testing.T, root string) // the executable is Plugins/x/run
		rel     string                          // default Plugins/x/run
		sha     string                          // default sha; "-" for none
		signers []string
		want    error // nil: valid
		check   string
	}{
		{name: "pinned hash", setup: nil},
		{name: "other bytes", setup: func(t *testing.T, root string) { write(t, root, "Plugins/x/run", []byte("#!/bin/sh\nexit 1\n"), 0o750) },
			want: ErrPluginHash, check: "sha256"},
		{name: "hash in upper case", sha: hexUpper(sha)},
		{name: "symlink to a file outside", setup: func(t *testing.T, root string) {
			replaceWithSymlink(t, filepath.Join(root, "Plugins/x/run"), "/bin/true")
		}, want: ErrPluginSymlink, check: "symlink"},
		{name: "symlinked folder", setup: func(t *testing.T, root string) {
			outside := t.TempDir()
			write(t, outside, "run", prog, 0o750)
			must(t, os.RemoveAll(filepath.Join(root, "Plugins/x")))
			must(t, os.Symlink(outside, filepath.Join(root, "Plugins/x")))
		}, want: ErrPluginSymlink, check: "symlink"},
		{name: "path leaving Plugins", rel: "Plugins/x/../../certs/ca.pem", want: ErrPluginPath, check: "path"},
		{name: "not below Plugins", rel: "Jobs/x/run", want: ErrPluginPath, check: "path"},
		{name: "group-writable file", setup: chmod("Plugins/x/run", 0o770), want: ErrPluginMode, check: "mode"},
		{name: "world-writable folder", setup: chmod("Plugins/x", 0o757), want: ErrPluginMode, check: "mode"},
		{name: "world-writable Plugins", setup: chmod("Plugins", 0o777), want: ErrPluginMode, check: "mode"},
		{name: "not executable", setup: chmod("Plugins/x/run", 0o640), want: ErrPluginMode, check: "mode"},
		{name: "missing", setup: func(t *testing.T, root string) { must(t, os.Remove(filepath.Join(root, "Plugins/x/run"))) },
			want: ErrPluginMissing, check: "exists"},
		{name: "a folder", setup: func(t *testing.T, root string) {
			must(t, os.Remove(filepath.Join(root, "Plugins/x/run")))
			must(t, os.Mkdir(filepath.Join(root, "Plugins/x/run"), 0o750))
		}, want: ErrPluginNotFile, check: "type"},
		{name: "a fifo", setup: func(t *testing.T, root string) {
			must(t, os.Remove(filepath.Join(root, "Plugins/x/run")))
			must(t, unix.Mkfifo(filepath.Join(root, "Plugins/x/run"), 0o750))
		}, want: ErrPluginNotFile, check: "type"},
		{name: "someone else's", setup: func(t *testing.T, root string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			must(t, os.Chown(filepath.Join(root, "Plugins/x/run"), 4242, 4242))
		}, want: ErrPluginOwner, check: "owner"},

		{name: "signature, key in trust/", sha: "-", signers: []string{keyID}, setup: func(t *testing.T, root string) {
			write(t, root, "Plugins/x/run.sig", sig, 0o600)
			write(t, root, "trust/plugins.pub", source.EncodePublicKey(pub), 0o600)
		}},
		{name: "signature in base64, key beside it", sha: "-", signers: []string{keyID}, setup: func(t *testing.T, root string) {
			write(t, root, "Plugins/x/run.sig", []byte(base64.StdEncoding.EncodeToString(sig)+"\n"), 0o600)
			write(t, root, "Plugins/x/run.pub", source.EncodePublicKey(pub), 0o600)
		}},
		{name: "signature by a key not pinned", sha: "-", signers: []string{source.KeyID(otherPub)}, setup: func(t *testing.T, root string) {
			write(t, root, "Plugins/x/run.sig", sig, 0o600)
			write(t, root, "trust/plugins.pub", source.EncodePublicKey(pub), 0o600)
		}, want: ErrPluginSignature, check: "signature"},
		{name: "signature of other bytes", sha: "-", signers: []string{source.KeyID(otherPub)}, setup: func(t *testing.T, root string) {
			write(t, root, "Plugins/x/run.sig", ed25519.Sign(otherPriv, []byte("other")), 0o600)
			write(t, root, "Plugins/x/run.pub", source.EncodePublicKey(otherPub), 0o600)
		}, want: ErrPluginSignature, check: "signature"},
		{name: "no hash and no pinned signer", sha: "-", setup: func(t *testing.T, root string) {
			write(t, root, "Plugins/x/run.sig", sig, 0o600)
			write(t, root, "trust/plugins.pub", source.EncodePublicKey(pub), 0o600)
		}, want: ErrPluginSignature, check: "signature"},
		{name: "a pinned hash wins over a signature", signers: []string{keyID}, setup: func(t *testing.T, root string) {
			write(t, root, "Plugins/x/run", []byte("#!/bin/sh\nexit 1\n"), 0o750)
			write(t, root, "Plugins/x/run.sig", ed25519.Sign(priv, []byte("#!/bin/sh\nexit 1\n")), 0o600)
			write(t, root, "trust/plugins.pub", source.EncodePublicKey(pub), 0o600)
		}, want: ErrPluginHash, check: "sha256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			for _, d := range []string{"Plugins", "Plugins/x", "trust"} {
				must(t, os.MkdirAll(e.path(d), 0o750))
			}
			write(t, e.root, "Plugins/x/run", prog, 0o750)
			if tt.setup != nil {
				tt.setup(t, e.root)
			}
			fd, err := unix.Open(e.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			must(t, err)
			defer unix.Close(fd)
			e.m.rootfd = fd
			p := &Plugins{m: e.m}
			rel, want := "Plugins/x/run", sha
			if tt.rel != "" {
				rel = tt.rel
			}
			if tt.sha == "-" {
				want = ""
			} else if tt.sha != "" {
				want = tt.sha
			}
			x, err := p.validateExecutable(rel, want, tt.signers)
			x.close()
			var ve *ValidationError
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("got %v, want valid", err)
			case tt.want == nil:
				if x.sum != sum && tt.setup == nil {
					t.Errorf("sum %x", x.sum)
				}
			case !errors.Is(err, tt.want) || !errors.As(err, &ve) || ve.Check != tt.check:
				t.Fatalf("got %v, want %v (check %s)", err, tt.want, tt.check)
			}
		})
	}
}

func write(t *testing.T, root, rel string, data []byte, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	must(t, os.MkdirAll(filepath.Dir(p), 0o750))
	must(t, os.WriteFile(p, data, mode))
	must(t, os.Chmod(p, mode))
}

func chmod(rel string, mode os.FileMode) func(*testing.T, string) {
	return func(t *testing.T, root string) { must(t, os.Chmod(filepath.Join(root, rel), mode)) }
}

func replaceWithSymlink(t *testing.T, path, target string) {
	t.Helper()
	must(t, os.Remove(path))
	must(t, os.Symlink(target, path))
}

func hexUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'f' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
