package source

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"warden/audit"
	"warden/schema"
	"warden/state"
)

// Documents in the shape DESIGN.md gives.
var sampleDocs = map[string]string{
	"policies/deny-netcat.json": `{"kind": "Policy", "id": "deny-netcat", "spec": {"name": "Block netcat", "type": "PrivilegeElevation",
 "status": "enforce", "priority": 100, "controls": ["deny"],
 "filters": {"users": ["*"], "machines": ["*"], "applications": [{"path": "/usr/bin/nc*"}]}}}`,
	"policies/dev-tools.json": `{"kind": "Policy", "id": "dev-tools", "spec": {"name": "Developers may elevate package tools",
 "type": "PrivilegeElevation", "status": "enforce", "priority": 50, "controls": ["allow", "justification"],
 "durationSeconds": 900, "filters": {"groups": ["developers"], "applications": [{"path": "/usr/bin/apt*"}]}}}`,
	"approvers/it-oncall.json": `{"kind": "Approver", "id": "it-oncall", "spec": {"name": "IT on call", "users": ["alice", "bob"], "policies": ["*"]}}`,
	"settings.json": `{"kind": "Settings", "id": "agent", "spec": {"allowedHosts": ["localhost", "127.0.0.1"],
 "logging": {"level": "Information", "retentionDays": 15}, "alternativeSignatures": []}}`,
}

func docFiles(extra map[string]string) map[string][]byte {
	out := map[string][]byte{}
	for p, d := range sampleDocs {
		out[p] = []byte(d)
	}
	for p, d := range extra {
		if d == "" {
			delete(out, p)
			continue
		}
		out[p] = []byte(d)
	}
	return out
}

func newKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return priv
}

// tarEntry is one entry of a hand-made archive.
type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func reg(name string, data []byte) tarEntry {
	return tarEntry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Size: int64(len(data)), Mode: 0o644}, data: data}
}

// craft signs files the way Build does, but returns the entries so a test
// can break the archive before it is written.
func craft(t testing.TB, key ed25519.PrivateKey, m schema.Manifest, files map[string][]byte) []tarEntry {
	t.Helper()
	if m.Created == "" {
		m.Created = "2025-01-01T00:00:00Z"
	}
	m.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	if m.Files == nil {
		for _, p := range paths {
			sum := sha256.Sum256(files[p])
			m.Files = append(m.Files, schema.ManifestFile{Path: p, SHA256: hex.EncodeToString(sum[:])})
		}
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	out := []tarEntry{reg(ManifestFile, raw), reg(SignatureFile, ed25519.Sign(key, raw)),
		reg(SignerFile, EncodePublicKey(key.Public().(ed25519.PublicKey)))}
	for _, p := range paths {
		out = append(out, reg(p, files[p]))
	}
	return out
}

func targz(t testing.TB, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if len(e.data) > 0 {
			if _, err := tw.Write(e.data); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeBundle writes data to a real file, as every refusal test reads its
// bundle from disk.
func writeBundle(t testing.TB, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "b.tar.gz")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// agent is a real store, audit writer and trust folder in a temp root.
type agent struct {
	root  string
	store *state.Store
	audit *audit.Writer
	p     *Pipeline
}

func newAgent(t testing.TB, trusted ...ed25519.PrivateKey) *agent {
	t.Helper()
	root := t.TempDir()
	return openAgent(t, root, trusted...)
}

func openAgent(t testing.TB, root string, trusted ...ed25519.PrivateKey) *agent {
	t.Helper()
	trust := filepath.Join(root, "trust")
	if err := os.MkdirAll(trust, 0o700); err != nil {
		t.Fatal(err)
	}
	for i, k := range trusted {
		pem := EncodePublicKey(k.Public().(ed25519.PublicKey))
		if err := os.WriteFile(filepath.Join(trust, "k"+string(rune('a'+i))+".pub"), pem, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st, err := state.Open(filepath.Join(root, "KeeperStorage"), state.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	aw, err := audit.NewWriter(st, audit.Options{Machine: "test"})
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{root: root, store: st, audit: aw, p: NewPipeline(st, aw, trust)}
	t.Cleanup(a.close)
	return a
}

func (a *agent) close() {
	a.audit.Close()
	a.store.Close()
}

func (a *agent) events(t testing.TB, typ string) []audit.Event {
	t.Helper()
	evs, _, err := audit.Query(a.store, audit.Filter{Types: []string{typ}, Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

func (a *agent) applyFile(t testing.TB, path string) (state.Meta, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return a.p.Apply(context.Background(), data, "bundle:"+filepath.Base(path))
}

func fixedNow() time.Time { return time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC) }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
