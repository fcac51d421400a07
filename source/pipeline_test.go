package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"warden/audit"
	"warden/schema"
)

// refusals lists every reason the issue says a bundle is refused for. Each
// case makes a real bundle file; the pipeline must refuse it with the
// named error, a one-line reason containing want, a BUNDLE_REJECTED event,
// and the applied state untouched.
var refusalCases = []struct {
	name   string
	bundle func(t *testing.T, key, stranger ed25519.PrivateKey) []byte
	err    error
	want   string
}{
	{"bad signature", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		es := craft(t, key, schema.Manifest{Version: 7}, docFiles(nil))
		es[1].data = bytes.Clone(es[1].data)
		es[1].data[0] ^= 0xff
		return targz(t, es)
	}, ErrBadSignature, "manifest.sig"},
	{"signature over other bytes", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		es := craft(t, key, schema.Manifest{Version: 7}, docFiles(nil))
		es[0] = reg(ManifestFile, append(bytes.Clone(es[0].data), ' '))
		return targz(t, es)
	}, ErrBadSignature, "manifest.sig"},
	{"untrusted key", func(t *testing.T, _, stranger ed25519.PrivateKey) []byte {
		return targz(t, craft(t, stranger, schema.Manifest{Version: 7}, docFiles(nil)))
	}, ErrUntrustedKey, "neither in trust/ nor listed in alternativeSignatures"},
	{"unsigned", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		es := craft(t, key, schema.Manifest{Version: 7}, docFiles(nil))
		return targz(t, append(es[:1:1], es[2:]...))
	}, ErrUnsigned, "manifest.sig"},
	{"file not listed", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		es := craft(t, key, schema.Manifest{Version: 7}, docFiles(nil))
		return targz(t, append(es, reg("policies/extra.json", []byte(sampleDocs["policies/dev-tools.json"]))))
	}, ErrUnlisted, "policies/extra.json"},
	{"listed file missing", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		es := craft(t, key, schema.Manifest{Version: 7}, docFiles(nil))
		var out []tarEntry
		for _, e := range es {
			if e.hdr.Name != "approvers/it-oncall.json" {
				out = append(out, e)
			}
		}
		return targz(t, out)
	}, ErrMissing, "approvers/it-oncall.json"},
	{"hash mismatch", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		es := craft(t, key, schema.Manifest{Version: 7}, docFiles(nil))
		for i, e := range es {
			if e.hdr.Name == "policies/deny-netcat.json" {
				es[i] = reg(e.hdr.Name, bytes.Replace(e.data, []byte("Block"), []byte("Allow"), 1))
			}
		}
		return targz(t, es)
	}, ErrHashMismatch, "policies/deny-netcat.json"},
	{"hash mismatch, files in another order than the manifest's", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		es := craft(t, key, schema.Manifest{Version: 7}, docFiles(nil))
		for i, e := range es {
			if e.hdr.Name == "policies/deny-netcat.json" {
				es[i] = reg(e.hdr.Name, bytes.Replace(e.data, []byte("Block"), []byte("Allow"), 1))
			}
		}
		slices.Reverse(es)
		return targz(t, es)
	}, ErrHashMismatch, "policies/deny-netcat.json"},
	{"file listed twice", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		files := docFiles(nil)
		var m schema.Manifest
		m.Version = 7
		for _, p := range []string{"approvers/it-oncall.json", "policies/deny-netcat.json", "policies/deny-netcat.json", "policies/dev-tools.json", "settings.json"} {
			sum := sha256.Sum256(files[p])
			m.Files = append(m.Files, schema.ManifestFile{Path: p, SHA256: hex.EncodeToString(sum[:])})
		}
		return targz(t, craft(t, key, m, files))
	}, ErrDuplicate, "policies/deny-netcat.json"},
	{"file out of place", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, craft(t, key, schema.Manifest{Version: 7}, docFiles(map[string]string{"README.md": "hi"})))
	}, ErrLayout, "README.md"},
	{"expired", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, craft(t, key, schema.Manifest{Version: 7, Expires: "2025-05-31T00:00:00Z"}, docFiles(nil)))
	}, ErrExpired, "expires"},
	{"rollback", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, craft(t, key, schema.Manifest{Version: 5}, docFiles(nil)))
	}, ErrRollback, "version"},
	{"invalid document", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		bad := strings.Replace(sampleDocs["policies/dev-tools.json"], `"durationSeconds": 900`, `"durationSeconds": 30`, 1)
		return targz(t, craft(t, key, schema.Manifest{Version: 7}, docFiles(map[string]string{"policies/dev-tools.json": bad})))
	}, ErrInvalid, "policies/dev-tools.json: spec.durationSeconds"},
	{"document kind out of place", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, craft(t, key, schema.Manifest{Version: 7},
			docFiles(map[string]string{"policies/it-oncall.json": sampleDocs["approvers/it-oncall.json"]})))
	}, ErrInvalid, "policies/it-oncall.json: kind"},
	{"absolute path", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, append(craft(t, key, schema.Manifest{Version: 7}, docFiles(nil)), reg("/etc/passwd", []byte("x"))))
	}, ErrUnsafePath, "/etc/passwd"},
	{"dot-dot", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, append(craft(t, key, schema.Manifest{Version: 7}, docFiles(nil)), reg("policies/../../x.json", []byte("x"))))
	}, ErrUnsafePath, ".."},
	{"symlink", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, append(craft(t, key, schema.Manifest{Version: 7}, docFiles(nil)),
			tarEntry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: "policies/ln.json", Linkname: "/etc/shadow"}}))
	}, ErrEntryType, "policies/ln.json"},
	{"hard link", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, append(craft(t, key, schema.Manifest{Version: 7}, docFiles(nil)),
			tarEntry{hdr: tar.Header{Typeflag: tar.TypeLink, Name: "policies/hl.json", Linkname: "settings.json"}}))
	}, ErrEntryType, "policies/hl.json"},
	{"device", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, append(craft(t, key, schema.Manifest{Version: 7}, docFiles(nil)),
			tarEntry{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev-null", Devmajor: 1, Devminor: 3}}))
	}, ErrEntryType, "dev-null"},
	{"fifo", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, append(craft(t, key, schema.Manifest{Version: 7}, docFiles(nil)),
			tarEntry{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "pipe"}}))
	}, ErrEntryType, "pipe"},
	{"too many entries", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		es := craft(t, key, schema.Manifest{Version: 7}, docFiles(nil))
		for i := 0; len(es) <= MaxFiles+3; i++ {
			es = append(es, reg("policies/p"+itoa(i)+".json", []byte("{}")))
		}
		return targz(t, es)
	}, ErrTooManyFiles, "10000"},
	{"entry over 1 MiB", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		return targz(t, append(craft(t, key, schema.Manifest{Version: 7}, docFiles(nil)),
			reg("policies/big.json", make([]byte, MaxEntrySize+1))))
	}, ErrEntryTooBig, "policies/big.json"},
	{"gzip bomb", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		es := craft(t, key, schema.Manifest{Version: 7}, docFiles(nil))
		zero := make([]byte, MaxEntrySize)
		for i := 0; i < 70; i++ {
			es = append(es, reg("policies/z"+itoa(i)+".json", zero))
		}
		return targz(t, es)
	}, ErrTooBig, "uncompressed"},
	{"bomb after the tar trailer", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		tw := tar.NewWriter(zw)
		for _, e := range craft(t, key, schema.Manifest{Version: 7}, docFiles(nil)) {
			h := e.hdr
			tw.WriteHeader(&h)
			tw.Write(e.data)
		}
		tw.Close()
		zero := make([]byte, 1<<20)
		for i := 0; i < 65; i++ {
			zw.Write(zero)
		}
		zw.Close()
		return buf.Bytes()
	}, ErrTooBig, "uncompressed"},
	{"truncated", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		data := targz(t, craft(t, key, schema.Manifest{Version: 7}, docFiles(nil)))
		return data[:len(data)*2/3]
	}, ErrTruncated, "truncated"},
	{"truncated trailer", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		data := targz(t, craft(t, key, schema.Manifest{Version: 7}, docFiles(nil)))
		return data[:len(data)-4]
	}, ErrTruncated, "truncated"},
	{"not gzip", func(t *testing.T, _, _ ed25519.PrivateKey) []byte {
		return []byte("PK\x03\x04 this is a zip file, not a bundle")
	}, ErrNotGzip, "gzip"},
	{"empty file", func(t *testing.T, _, _ ed25519.PrivateKey) []byte { return nil }, ErrNotGzip, "empty"},
	{"duplicate entry", func(t *testing.T, key, _ ed25519.PrivateKey) []byte {
		es := craft(t, key, schema.Manifest{Version: 7}, docFiles(nil))
		return targz(t, append(es, es[len(es)-1]))
	}, ErrDuplicate, "duplicate"},
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestPipelineRefuses(t *testing.T) {
	key, stranger := newKey(t), newKey(t)
	for _, tc := range refusalCases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAgent(t, key)
			a.p.Now = fixedNow
			v5 := writeBundle(t, targz(t, craft(t, key, schema.Manifest{Version: 5}, docFiles(nil))))
			before, err := a.applyFile(t, v5)
			if err != nil {
				t.Fatalf("apply v5: %v", err)
			}
			_, err = a.applyFile(t, writeBundle(t, tc.bundle(t, key, stranger)))
			if !errors.Is(err, tc.err) {
				t.Fatalf("got error %v, want %v", err, tc.err)
			}
			if !Refused(err) {
				t.Errorf("Refused(%v) = false", err)
			}
			reason := Reason(err)
			if strings.Contains(reason, "\n") || !strings.Contains(reason, tc.want) {
				t.Errorf("reason %q: want one line containing %q", reason, tc.want)
			}
			if cur := a.store.Current().Meta; cur != before {
				t.Errorf("applied state changed: got %+v, want %+v", cur, before)
			}
			evs := a.events(t, audit.BundleRejected)
			if len(evs) != 1 || evs[0].Details["reason"] != reason {
				t.Fatalf("got %d BUNDLE_REJECTED events (%v), want one with reason %q", len(evs), evs, reason)
			}
		})
	}
}

// A bundle whose entries come in any order (the manifest last, the files
// in reverse) applies as the built one does.
func TestPipelineAppliesAnyOrder(t *testing.T) {
	key := newKey(t)
	a := newAgent(t, key)
	es := craft(t, key, schema.Manifest{Version: 3}, docFiles(nil))
	slices.Reverse(es)
	m, err := a.applyFile(t, writeBundle(t, targz(t, es)))
	if err != nil {
		t.Fatal(err)
	}
	if m.Documents != 4 || a.store.Current().Get(schema.KindPolicy, "dev-tools") == nil {
		t.Errorf("got meta %+v", m)
	}
}

func TestPipelineApplies(t *testing.T) {
	key := newKey(t)
	a := newAgent(t, key)
	m, err := a.applyFile(t, writeBundle(t, targz(t, craft(t, key, schema.Manifest{Version: 3}, docFiles(nil)))))
	if err != nil {
		t.Fatal(err)
	}
	if m.BundleVersion != 3 || m.Documents != 4 || m.Source != "bundle:b.tar.gz" {
		t.Errorf("got meta %+v", m)
	}
	cur := a.store.Current()
	if d := cur.Get(schema.KindPolicy, "dev-tools"); d == nil || d.Policy().DurationSeconds != 900 {
		t.Errorf("dev-tools not applied: %+v", d)
	}
	evs := a.events(t, audit.BundleApplied)
	if len(evs) != 1 || evs[0].Component != "source" || evs[0].TargetInfo.ID != "3" {
		t.Fatalf("got BUNDLE_APPLIED events %+v", evs)
	}
	// The same version again is a rollback, the next one applies.
	if _, err := a.applyFile(t, writeBundle(t, targz(t, craft(t, key, schema.Manifest{Version: 3}, docFiles(nil))))); !errors.Is(err, ErrRollback) {
		t.Errorf("same version again: got %v, want ErrRollback", err)
	}
	m, err = a.applyFile(t, writeBundle(t, targz(t, craft(t, key, schema.Manifest{Version: 4},
		docFiles(map[string]string{"policies/dev-tools.json": ""})))))
	if err != nil || m.Generation != 2 || m.Documents != 3 {
		t.Fatalf("v4: got %+v, %v", m, err)
	}
}

// An archive made with `tar -czf b.tar.gz -C dir .` has "./" names and
// folder entries; it reads like one made by Build.
func TestReadTarOfFolder(t *testing.T) {
	key := newKey(t)
	var es []tarEntry
	es = append(es, tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755}})
	for _, e := range craft(t, key, schema.Manifest{Version: 2}, docFiles(nil)) {
		e.hdr.Name = "./" + e.hdr.Name
		es = append(es, e)
	}
	es = append(es, tarEntry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: "./policies/", Mode: 0o755}})
	b, err := ReadBundleFile(writeBundle(t, targz(t, es)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), b, NewTrust(key.Public().(ed25519.PublicKey)), fixedNow()); err != nil {
		t.Fatal(err)
	}
}

// Settings alternativeSignatures pins a key by thumbprint; the key itself
// comes with the bundle (manifest.pub) and is trusted only while pinned.
func TestAlternativeSignatures(t *testing.T) {
	key, next := newKey(t), newKey(t)
	nextID := KeyID(next.Public().(ed25519.PublicKey))
	a := newAgent(t, key)
	byNext := writeBundle(t, targz(t, craft(t, next, schema.Manifest{Version: 2}, docFiles(nil))))
	if _, err := a.applyFile(t, byNext); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("before the pin: got %v, want ErrUntrustedKey", err)
	}
	pinned := strings.Replace(sampleDocs["settings.json"], `"alternativeSignatures": []`, `"alternativeSignatures": ["`+nextID+`"]`, 1)
	if _, err := a.applyFile(t, writeBundle(t, targz(t, craft(t, key, schema.Manifest{Version: 1},
		docFiles(map[string]string{"settings.json": pinned}))))); err != nil {
		t.Fatal(err)
	}
	// Pinned, but the bundle does not carry the key: nothing to verify with.
	es := craft(t, next, schema.Manifest{Version: 2}, docFiles(nil))
	if _, err := a.applyFile(t, writeBundle(t, targz(t, append(es[:2:2], es[3:]...)))); !errors.Is(err, ErrUntrustedKey) {
		t.Fatalf("pinned without key material: got %v, want ErrUntrustedKey", err)
	}
	// The key after the files: the signature checked as soon as the
	// manifest and signature were read (without it) does not count.
	es = craft(t, next, schema.Manifest{Version: 2}, docFiles(map[string]string{"settings.json": pinned}))
	late := append(append(es[:2:2], es[3:]...), es[2])
	if _, err := a.applyFile(t, writeBundle(t, targz(t, late))); err != nil {
		t.Fatalf("pinned, manifest.pub after the files: %v", err)
	}
	if _, err := a.applyFile(t, writeBundle(t, targz(t, craft(t, next, schema.Manifest{Version: 3}, docFiles(nil))))); err != nil {
		t.Fatalf("pinned: %v", err)
	}
	evs := a.events(t, audit.BundleApplied)
	if got := evs[len(evs)-1].Details["trustedBy"]; got != "alternativeSignatures" {
		t.Errorf("trustedBy = %v, want alternativeSignatures", got)
	}
}

func TestValidateBundleFileReportsAll(t *testing.T) {
	key := newKey(t)
	bad1 := strings.Replace(sampleDocs["policies/dev-tools.json"], `"durationSeconds": 900`, `"durationSeconds": 30`, 1)
	bad2 := strings.Replace(sampleDocs["policies/deny-netcat.json"], `"status": "enforce"`, `"status": "sometimes"`, 1)
	path := writeBundle(t, targz(t, craft(t, key, schema.Manifest{Version: 1},
		docFiles(map[string]string{"policies/dev-tools.json": bad1, "policies/deny-netcat.json": bad2}))))
	_, err := ValidateBundleFile(path)
	se, ok := err.(schema.Errors)
	if !ok {
		t.Fatalf("got %T %v, want schema.Errors", err, err)
	}
	got := se.Error()
	for _, want := range []string{"policies/deny-netcat.json: spec.status", "policies/dev-tools.json: spec.durationSeconds"} {
		if !strings.Contains(got, want) {
			t.Errorf("errors %q do not name %q", got, want)
		}
	}
	docs, err := ValidateBundleFile(writeBundle(t, targz(t, craft(t, key, schema.Manifest{Version: 1}, docFiles(nil)))))
	if err != nil || len(docs) != 4 {
		t.Errorf("valid bundle: got %d docs, %v", len(docs), err)
	}
}

func TestBuildDeterministic(t *testing.T) {
	key := newKey(t)
	dir := t.TempDir()
	for p, d := range sampleDocs {
		writeFile(t, dir, p, d)
	}
	os.WriteFile(dir+"/.DS_Store", []byte("junk"), 0o600)
	one, m, err := Build(dir, key, BuildOptions{Version: 9, Expires: 48 * time.Hour, Now: fixedNow,
		Created: time.Date(2025, 5, 31, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	// Touch every file: the explicit created time keeps the bytes the same.
	for p := range sampleDocs {
		os.Chtimes(dir+"/"+p, time.Now(), time.Now())
	}
	two, _, err := Build(dir, key, BuildOptions{Version: 9, Expires: 48 * time.Hour, Now: fixedNow,
		Created: time.Date(2025, 5, 31, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one, two) {
		t.Error("two builds of the same input differ")
	}
	if m.Expires != "2025-06-02T12:00:00Z" || len(m.Files) != 4 {
		t.Errorf("manifest %+v", m)
	}
	b, err := ReadBundle(bytes.NewReader(one))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(context.Background(), b, NewTrust(key.Public().(ed25519.PublicKey)), fixedNow()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Build(dir, key, BuildOptions{Version: 9, Expires: time.Hour, Now: fixedNow,
		Created: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}); err == nil {
		t.Error("built a bundle that is already expired")
	}
	writeFile(t, dir, "policies/bad.json", `{"kind": "Policy", "id": "bad", "spec": {}}`)
	if _, _, err := Build(dir, key, BuildOptions{Version: 9}); !errors.Is(err, ErrInvalid) {
		t.Errorf("build with an invalid document: got %v", err)
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	pub, err := WriteKeyPair(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(dir + "/" + PrivateKeyFile)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", st.Mode().Perm())
	}
	priv, err := LoadPrivateKey(dir + "/" + PrivateKeyFile)
	if err != nil || !priv.Public().(ed25519.PublicKey).Equal(pub) {
		t.Fatalf("private key does not load back: %v", err)
	}
	got, err := LoadPublicKey(dir + "/" + PublicKeyFile)
	if err != nil || !got.Equal(pub) {
		t.Fatalf("public key does not load back: %v", err)
	}
	if _, err := WriteKeyPair(dir); err == nil {
		t.Error("keygen overwrote an existing private key")
	}
	tr, err := LoadTrust(dir)
	if err != nil || len(tr.KeyIDs()) != 1 || tr.KeyIDs()[0] != KeyID(pub) {
		t.Errorf("trust from the key folder: %v %v", tr.KeyIDs(), err)
	}
}

func writeFile(t testing.TB, dir, rel, data string) {
	t.Helper()
	p := dir + "/" + rel
	if err := os.MkdirAll(p[:strings.LastIndex(p, "/")], 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
