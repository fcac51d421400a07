package source

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"warden/audit"
	"warden/bench/rss"
	"warden/schema"
	"warden/state"
)

// manyPolicies returns n policies; tag makes their bytes (and so the
// validation cache keys) unique to one bundle, and changed of them carry
// change instead.
func manyPolicies(n int, tag string, changed int, change string) map[string][]byte {
	files := make(map[string][]byte, n)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("p-%05d", i)
		desc := tag
		if i < changed {
			desc = change
		}
		files["policies/"+id+".json"] = []byte(`{"kind": "Policy", "id": "` + id + `", "spec": {"name": "Policy ` + id +
			`", "description": "` + desc + `", "type": "PrivilegeElevation", "status": "enforce", "priority": ` + strconv.Itoa(i%1000) +
			`, "controls": ["allow", "justification"], "durationSeconds": 900, "filters": {"users": ["*"], "groups": ["developers"], ` +
			`"applications": [{"path": "/usr/bin/tool-` + strconv.Itoa(i) + `*"}]}}}`)
	}
	return files
}

func benchAgent(b *testing.B, key ed25519.PrivateKey) *agent {
	root := b.TempDir()
	os.MkdirAll(filepath.Join(root, "trust"), 0o700)
	os.WriteFile(filepath.Join(root, "trust", "k.pub"), EncodePublicKey(key.Public().(ed25519.PublicKey)), 0o600)
	st, err := state.Open(filepath.Join(root, "KeeperStorage"), state.Options{}) // with fsync
	if err != nil {
		b.Fatal(err)
	}
	aw, err := audit.NewWriter(st, audit.Options{Machine: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	a := &agent{root: root, store: st, audit: aw, p: NewPipeline(st, aw, filepath.Join(root, "trust"))}
	a.p.Logger = discardLogger()
	b.Cleanup(a.close)
	return a
}

func report(b *testing.B, sum Timings, n int) {
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }
	b.ReportMetric(per(sum.Read), "read-ms")
	b.ReportMetric(per(sum.Hash), "hash-ms")
	b.ReportMetric(per(sum.Verify), "verify-ms")
	b.ReportMetric(per(sum.Validate), "validate-ms")
	b.ReportMetric(per(sum.Commit), "commit-ms")
	b.ReportMetric(rss.PeakMB(), "peakRSS-MB")
}

func add(a, b Timings) Timings {
	return Timings{a.Read + b.Read, a.Hash + b.Hash, a.Verify + b.Verify, a.Validate + b.Validate, a.Commit + b.Commit}
}

// BenchmarkApply10000 verifies and applies a bundle of 10,000 policies none
// of which was validated before: each iteration's documents are new bytes,
// in every run of the benchmark (-count repeats it in one process, with
// the validation cache of the earlier runs).
func BenchmarkApply10000(b *testing.B) {
	key := newKey(b)
	a := benchAgent(b, key)
	nonce := strconv.FormatInt(time.Now().UnixNano(), 10)
	var sum Timings
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		data := targz(b, craft(b, key, schema.Manifest{Version: int64(i + 1)}, manyPolicies(10_000, "run-"+strconv.Itoa(i)+"-"+nonce, 0, "")))
		b.StartTimer()
		_, t, err := a.p.ApplyTimed(context.Background(), data, "bench")
		if err != nil {
			b.Fatal(err)
		}
		sum = add(sum, t)
	}
	report(b, sum, b.N)
}

// BenchmarkApply10000Changed10 applies a new version of a 10,000-policy
// bundle in which 10 policies changed.
func BenchmarkApply10000Changed10(b *testing.B) {
	key := newKey(b)
	a := benchAgent(b, key)
	base := "base-" + strconv.FormatInt(time.Now().UnixNano(), 10)
	first := targz(b, craft(b, key, schema.Manifest{Version: 1}, manyPolicies(10_000, base, 0, "")))
	if _, err := a.p.Apply(context.Background(), first, "bench"); err != nil {
		b.Fatal(err)
	}
	var sum Timings
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		data := targz(b, craft(b, key, schema.Manifest{Version: int64(i + 2)}, manyPolicies(10_000, base, 10, "changed-"+strconv.Itoa(i)+base)))
		b.StartTimer()
		_, t, err := a.p.ApplyTimed(context.Background(), data, "bench")
		if err != nil {
			b.Fatal(err)
		}
		sum = add(sum, t)
	}
	report(b, sum, b.N)
}

// BenchmarkParseManifest10000 checks the manifest of a 10,000-file bundle
// (the Go check that stands in for manifest.cue, see parseManifest).
func BenchmarkParseManifest10000(b *testing.B) {
	h := strings.Repeat("ab", 32)
	var sb strings.Builder
	sb.WriteString(`{"version": 1, "created": "2026-01-01T00:00:00Z", "keyId": "` + h + `", "files": [`)
	for i := range 10_000 {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, `{"path": "policies/p-%05d.json", "sha256": "%s"}`, i, h)
	}
	sb.WriteString("]}")
	data := []byte(sb.String())
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := parseManifest(data); err != nil {
			b.Fatal(err)
		}
	}
}
