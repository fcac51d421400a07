package opa

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"

	"warden/bench/rss"
	"warden/policy"
	"warden/schema"
)

// manyPolicies is source's manyPolicies (source/bench_test.go, which this
// module cannot import): the 10,000 documents BenchmarkApply10000 applies,
// byte for byte, with tag in every description.
func manyPolicies(n int, tag string) map[string][]byte {
	files := make(map[string][]byte, n)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("p-%05d", i)
		files["policies/"+id+".json"] = []byte(`{"kind": "Policy", "id": "` + id + `", "spec": {"name": "Policy ` + id +
			`", "description": "` + tag + `", "type": "PrivilegeElevation", "status": "enforce", "priority": ` + strconv.Itoa(i%1000) +
			`, "controls": ["allow", "justification"], "durationSeconds": 900, "filters": {"users": ["*"], "groups": ["developers"], ` +
			`"applications": [{"path": "/usr/bin/tool-` + strconv.Itoa(i) + `*"}]}}}`)
	}
	return files
}

const (
	bundleName = "warden"
	keyID      = "warden"
	regoPath   = "warden/policy.rego"
)

type entry struct {
	name string
	data []byte
}

// signedBundle lays docs out as an OPA bundle, one data file per document
// (policies/p-00000.json becomes policies/p-00000/data.json, so
// data.policies["p-00000"] is the document), plus module as regoPath if it
// is not empty, a .manifest, and a .signatures.json: an EdDSA JWT over
// every file's SHA-256 (OPA's hash of the parsed JSON for .json files, of
// the bytes for the module), in OPA's format, which the Reader verifies.
// (opa build would merge the data into one data.json; the files are kept
// apart to load as many as source's bundle holds.)
func signedBundle(tb testing.TB, key ed25519.PrivateKey, docs map[string][]byte, module string) []entry {
	tb.Helper()
	roots := []string{"policies", "warden"}
	manifest, err := json.Marshal(bundle.Manifest{Revision: "bench", Roots: &roots})
	if err != nil {
		tb.Fatal(err)
	}
	names := make([]string, 0, len(docs))
	for n := range docs {
		names = append(names, n)
	}
	sort.Strings(names)
	entries := []entry{{".manifest", manifest}}
	for _, n := range names {
		id := strings.TrimSuffix(strings.TrimPrefix(n, "policies/"), ".json")
		entries = append(entries, entry{"policies/" + id + "/data.json", docs[n]})
	}
	if module != "" {
		entries = append(entries, entry{regoPath, []byte(module)})
	}
	h, err := bundle.NewSignatureHasher(bundle.SHA256)
	if err != nil {
		tb.Fatal(err)
	}
	files := make([]bundle.FileInfo, 0, len(entries))
	for _, e := range entries {
		var v any = e.data
		if bundle.IsStructuredDoc(e.name) {
			if err := util.Unmarshal(e.data, &v); err != nil {
				tb.Fatalf("%s: %v", e.name, err)
			}
		}
		sum, err := h.HashFile(v)
		if err != nil {
			tb.Fatal(err)
		}
		files = append(files, bundle.NewFile(e.name, hex.EncodeToString(sum), string(bundle.SHA256)))
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	priv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	token, err := bundle.GenerateSignedToken(files, bundle.NewSigningConfig(string(priv), "EdDSA", ""), keyID)
	if err != nil {
		tb.Fatal(err)
	}
	sigs, err := json.Marshal(bundle.SignaturesConfig{Signatures: []string{token}})
	if err != nil {
		tb.Fatal(err)
	}
	return append([]entry{{".signatures.json", sigs}}, entries...)
}

func targz(tb testing.TB, entries []entry) []byte {
	tb.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "/" + e.name, Size: int64(len(e.data)), Mode: 0o644}); err != nil {
			tb.Fatal(err)
		}
		if _, err := tw.Write(e.data); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

func verification(tb testing.TB, key ed25519.PrivateKey) *bundle.VerificationConfig {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		tb.Fatal(err)
	}
	pub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{keyID: {Key: string(pub), Algorithm: "EdDSA"}}, keyID, "", nil)
}

// validated is docs as warden's documents.
func validated(tb testing.TB, docs map[string][]byte) []*schema.Document {
	tb.Helper()
	files := make([]schema.File, 0, len(docs))
	for n, d := range docs {
		files = append(files, schema.File{Name: n, Data: d})
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	parsed, err := schema.ValidateMany(files)
	if err != nil {
		tb.Fatal(err)
	}
	return parsed
}

// regoFor is the Rego (rego.go) for the same documents, decoded without
// warden's validation (CUE) so that building the benchmark's bundle stays
// cheap, as source's is. TestBundleLoads checks the rules decide as
// warden's index of the validated documents does.
func regoFor(tb testing.TB, docs map[string][]byte) string {
	tb.Helper()
	names := make([]string, 0, len(docs))
	for n := range docs {
		names = append(names, n)
	}
	sort.Strings(names)
	parsed := make([]*schema.Document, 0, len(docs))
	for _, n := range names {
		var d struct {
			Kind, ID string
			Spec     schema.PolicySpec
		}
		if err := json.Unmarshal(docs[n], &d); err != nil {
			tb.Fatalf("%s: %v", n, err)
		}
		parsed = append(parsed, &schema.Document{Kind: d.Kind, ID: d.ID, Spec: &d.Spec})
	}
	module, err := Rego(parsed)
	if err != nil {
		tb.Fatal(err)
	}
	return module
}

// load reads (verifying the signature and every file's hash) and
// activates data into a new in-memory store in one transaction, as OPA's
// bundle plugin does, compiling the bundle's modules.
func load(ctx context.Context, data []byte, vc *bundle.VerificationConfig) (read, activate time.Duration, store storage.Store, compiler *ast.Compiler, err error) {
	store, compiler = inmem.New(), ast.NewCompiler()
	t0 := time.Now()
	b, err := bundle.NewReader(bytes.NewReader(data)).WithBundleVerificationConfig(vc).WithBundleName(bundleName).Read()
	if err != nil {
		return 0, 0, nil, nil, fmt.Errorf("read: %w", err)
	}
	t1 := time.Now()
	params := storage.WriteParams
	params.Context = storage.NewContext()
	txn, err := store.NewTransaction(ctx, params)
	if err != nil {
		return 0, 0, nil, nil, err
	}
	err = bundle.Activate(&bundle.ActivateOpts{Ctx: ctx, Store: store, Txn: txn, TxnCtx: params.Context,
		Compiler: compiler, Metrics: metrics.New(), Bundles: map[string]*bundle.Bundle{bundleName: &b}})
	if err != nil {
		store.Abort(ctx, txn)
		return 0, 0, nil, nil, fmt.Errorf("activate: %w", err)
	}
	if err := store.Commit(ctx, txn); err != nil {
		return 0, 0, nil, nil, err
	}
	return t1.Sub(t0), time.Since(t1), store, compiler, nil
}

// TestBundleLoads: the benchmark's bundle verifies and lands in the store
// (every document under data.policies, the rules compiled), and a bundle
// with one document changed after signing is refused, so the signature is
// really checked. The rules loaded from the bundle decide as warden does.
func TestBundleLoads(t *testing.T) {
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	docs := manyPolicies(1000, "test")
	entries := signedBundle(t, key, docs, regoFor(t, docs))
	_, _, store, compiler, err := load(ctx, targz(t, entries), verification(t, key))
	if err != nil {
		t.Fatal(err)
	}
	v, err := storage.ReadOne(ctx, store, storage.MustParsePath("/policies"))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(v.(map[string]any)); n != 1000 {
		t.Fatalf("%d policies in the store, want 1000", n)
	}
	if got := v.(map[string]any)["p-00999"].(map[string]any)["id"]; got != "p-00999" {
		t.Fatalf("p-00999 holds id %v", got)
	}
	if rules := compiler.GetRules(ast.MustParseRef("data.warden.hits")); len(rules) != 1000 {
		t.Fatalf("%d rules for data.warden.hits, want 1000", len(rules))
	}
	ix, err := policy.Compile(validated(t, docs))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range []*policy.Request{
		{User: "alice", Groups: []string{"developers"}, Action: policy.ActionElevate, Application: policy.Application{Path: "/usr/bin/tool-5x"}},
		{User: "bob", Groups: []string{"staff", "developers"}, Action: policy.ActionElevate, Application: policy.Application{Path: "/usr/bin/tool-999"}},
		{User: "carol", Groups: []string{"staff"}, Action: policy.ActionElevate, Application: policy.Application{Path: "/usr/bin/tool-5"}},
		{User: "dave", Groups: []string{"developers"}, Action: policy.ActionElevate, Application: policy.Application{Path: "/usr/bin/other"}},
	} {
		want := ix.Evaluate(r, now)
		if i == 0 && (want.Policy != "p-00005" || want.Decision != "justification") {
			t.Fatalf("warden: %s by %q, want justification by p-00005", want.Decision, want.Policy)
		}
		js, _ := json.Marshal(r)
		var input map[string]any
		if err := json.Unmarshal(js, &input); err != nil {
			t.Fatal(err)
		}
		rs, err := rego.New(rego.Query("data.warden.decision"), rego.Compiler(compiler), rego.Store(store), rego.Input(input)).Eval(ctx)
		if err != nil || len(rs) != 1 {
			t.Fatalf("opa: %v %v", rs, err)
		}
		got := rs[0].Expressions[0].Value.(map[string]any)
		if got["decision"] != want.Decision || got["policy"] != want.Policy {
			t.Fatalf("%+v: warden %s by %q, OPA from the bundle %v", r, want.Decision, want.Policy, got)
		}
	}
	for i, e := range entries {
		if e.name == "policies/p-00500/data.json" {
			entries[i].data = bytes.Replace(e.data, []byte(`"test"`), []byte(`"tampered"`), 1)
		}
	}
	if _, _, _, _, err := load(ctx, targz(t, entries), verification(t, key)); err == nil || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("tampered bundle: %v, want a digest mismatch", err)
	}
}

// BenchmarkBundleLoad10000 is OPA's side of source's BenchmarkApply10000:
// a signed bundle of the same 10,000 policy documents, one data.json each
// (10,002 files with .manifest and .signatures.json; files=data+rego adds
// the same policies as Rego, rego.go, one module OPA compiles). Per
// iteration, timed: read the .tar.gz (gunzip, verify the EdDSA JWT and
// every file's SHA-256, parse the JSON and the module), then activate it
// into a new in-memory store in one transaction (write the data, the
// manifest, compile the modules) and commit. The bundle is built once,
// outside the timer; OPA keeps no cache between loads to defeat.
//
// peakRSS-MB is VmHWM, reset (/proc/self/clear_refs) when the benchmark
// starts so one sub-benchmark's peak is not the next one's; like source's
// it includes building the test bundle.
func BenchmarkBundleLoad10000(b *testing.B) {
	for _, withRego := range []bool{false, true} {
		name := "files=data"
		if withRego {
			name = "files=data+rego"
		}
		b.Run(name, func(b *testing.B) {
			resetPeakRSS()
			ctx := context.Background()
			_, key, _ := ed25519.GenerateKey(rand.Reader)
			docs := manyPolicies(10_000, "run-"+b.Name())
			module := ""
			if withRego {
				module = regoFor(b, docs)
			}
			data := targz(b, signedBundle(b, key, docs, module))
			vc := verification(b, key)
			var read, activate time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r, a, _, _, err := load(ctx, data, vc)
				if err != nil {
					b.Fatal(err)
				}
				read += r
				activate += a
			}
			b.StopTimer()
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
			b.ReportMetric(ms(read), "read-ms")
			b.ReportMetric(ms(activate), "activate-ms")
			b.ReportMetric(ms(read+activate), "total-ms")
			b.ReportMetric(float64(len(data))/1e6, "bundle-MB")
			b.ReportMetric(rss.PeakMB(), "peakRSS-MB")
		})
	}
}

// resetPeakRSS returns freed memory to the OS and resets VmHWM to the
// current resident set (Linux: 5 to /proc/self/clear_refs). If the kernel
// refuses, VmHWM stays the process's peak.
func resetPeakRSS() {
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}
