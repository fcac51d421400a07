package source

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"warden/schema"
)

// FuzzReadBundle feeds arbitrary bytes to the bundle reader and verifier:
// they must never panic, and whatever the reader accepts must be within
// its limits. Seeds: testdata/fuzz/FuzzReadBundle (real bundles, whole and
// broken; regenerate with WARDEN_WRITE_CORPUS=1 go test -run TestWriteCorpus).
func FuzzReadBundle(f *testing.F) {
	for _, seed := range corpusSeeds(f) {
		f.Add(seed)
	}
	key := newKey(f)
	trust := NewTrust(key.Public().(ed25519.PublicKey))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := ReadBundle(bytes.NewReader(data))
		if err != nil {
			if !Refused(err) {
				t.Fatalf("reader error is not a refusal: %v", err)
			}
			return
		}
		if len(b.Files) > MaxFiles {
			t.Fatalf("%d files accepted", len(b.Files))
		}
		total := 0
		for p, d := range b.Files {
			if len(d) > MaxEntrySize || p == "" || p[0] == '/' {
				t.Fatalf("accepted %q with %d bytes", p, len(d))
			}
			total += len(d)
		}
		if total > MaxUncompressed {
			t.Fatalf("accepted %d bytes", total)
		}
		Verify(context.Background(), b, trust, fixedNow())
		// A mutated bundle rarely carries a valid signature, which would
		// keep every later check unfuzzed: sign its manifest as it is
		// with the trusted key and verify again, so the manifest, file and
		// document checks see the fuzzer's input too.
		m, err := parseManifest(b.Manifest)
		if err != nil {
			return
		}
		pub := key.Public().(ed25519.PublicKey)
		resigned := &Trust{keys: map[string]ed25519.PublicKey{m.KeyID: pub}}
		b.Signature, b.Signer = ed25519.Sign(key, b.Manifest), nil
		if _, err := Verify(context.Background(), b, resigned, fixedNow()); errors.Is(err, ErrBadSignature) || errors.Is(err, ErrUntrustedKey) {
			t.Fatalf("a manifest signed with the trusted key was refused at the signature: %v", err)
		}
	})
}

func corpusSeeds(t testing.TB) [][]byte {
	key := newKey(t)
	good := targz(t, craft(t, key, schema.Manifest{Version: 1}, docFiles(nil)))
	dotted := []tarEntry{{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}}}
	for _, e := range craft(t, key, schema.Manifest{Version: 1}, docFiles(nil)) {
		e.hdr.Name = "./" + e.hdr.Name
		dotted = append(dotted, e)
	}
	return [][]byte{
		good,
		good[:len(good)/2],
		targz(t, dotted),
		targz(t, append(craft(t, key, schema.Manifest{Version: 1}, docFiles(nil)),
			tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "policies/x.json", Linkname: "/etc/shadow"}})),
		targz(t, append(craft(t, key, schema.Manifest{Version: 1}, docFiles(nil)), reg("../x.json", []byte("{}")))),
		[]byte("not a bundle"),
	}
}

// TestWriteCorpus writes the fuzz seed corpus when WARDEN_WRITE_CORPUS is set.
func TestWriteCorpus(t *testing.T) {
	if os.Getenv("WARDEN_WRITE_CORPUS") == "" {
		t.Skip("set WARDEN_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzReadBundle")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReadBundle")
	os.MkdirAll(dir, 0o755)
	names := []string{"good", "truncated", "dotted-folder", "symlink", "dotdot", "not-gzip"}
	for i, seed := range corpusSeeds(t) {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
		if err := os.WriteFile(filepath.Join(dir, names[i]), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
