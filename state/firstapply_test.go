package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"warden/schema"
)

// TestAppendStoredIsMarshal: appendStored writes exactly what json.Marshal
// of the stored envelope writes, for specs and raw bytes of every shape,
// strings that need escaping included.
func TestAppendStoredIsMarshal(t *testing.T) {
	specs := []any{nil, map[string]any{}, map[string]any{"name": "<a&b>", "x": []int{1, 2}, "u": "\u2028é\x01"}, []string{"a"}, "s", 5}
	raws := [][]byte{nil, {}, []byte(`{"kind": "Policy"}`), {0, 1, 2, 0xff, 0xfe}, bytes.Repeat([]byte("abc"), 400)}
	strs := []string{"", "Policy", "dev-tools", `a"b`, `a\b`, "<script>", "a&b", "é", "\u2028", "\x7f", "\x00"}
	for _, sp := range specs {
		spec, err := json.Marshal(sp)
		if err != nil {
			t.Fatal(err)
		}
		if sp == nil {
			spec = nil
		}
		for _, raw := range raws {
			for _, kind := range strs {
				id := strs[(len(kind)+len(raw))%len(strs)]
				want, err := json.Marshal(stored{Kind: kind, ID: id, Raw: raw, Spec: spec})
				if err != nil {
					t.Fatal(err)
				}
				if got := appendStored(nil, kind, id, raw, spec); !bytes.Equal(got, want) {
					t.Errorf("kind %q id %q raw %q spec %s:\n got %s\nwant %s", kind, id, raw, spec, got, want)
				}
			}
		}
	}
}

// FuzzAppendStoredIsMarshal is TestAppendStoredIsMarshal on fuzzed input.
func FuzzAppendStoredIsMarshal(f *testing.F) {
	f.Add("Policy", "dev-tools", []byte(`{"kind":"Policy"}`), `{"name":"n"}`)
	f.Add("<&>", "\u2028", []byte{0, 0xff}, `[1,"<"]`)
	f.Fuzz(func(t *testing.T, kind, id string, raw []byte, specText string) {
		var v any
		if json.Unmarshal([]byte(specText), &v) != nil {
			return
		}
		spec, err := json.Marshal(v)
		if err != nil {
			return
		}
		want, err := json.Marshal(stored{Kind: kind, ID: id, Raw: raw, Spec: spec})
		if err != nil {
			return
		}
		if got := appendStored(nil, kind, id, raw, spec); !bytes.Equal(got, want) {
			t.Fatalf("got %s\nwant %s", got, want)
		}
	})
}

// TestFirstApplyFillsPages: a first apply writes its documents into full
// pages (bbolt's default splits each at half, twice the pages for the
// sorted appends of a first apply), and a generation that changes a few
// of them afterwards still applies and reads back.
func TestFirstApplyFillsPages(t *testing.T) {
	dir := keeperDir(t)
	s := openT(t, dir, Options{})
	docs := generationDocs(t, 2_000, "fill")
	if _, err := s.ApplyGeneration(Apply{Source: "test", Docs: docs}); err != nil {
		t.Fatal(err)
	}
	fill := func() float64 {
		var st bolt.BucketStats
		if err := s.db.View(func(tx *bolt.Tx) error {
			st = tx.Bucket(bDocs).Stats()
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return float64(st.LeafInuse) / float64(st.LeafAlloc)
	}
	if f := fill(); f < 0.7 {
		t.Fatalf("documents fill %.0f %% of their pages after a first apply, want at least 70 %%", 100*f)
	}
	next := append([]*schema.Document(nil), docs...)
	for k := 0; k < 10; k++ {
		next[k*197] = restoredPolicy(t, next[k*197].ID, "changed")
	}
	if _, err := s.ApplyGeneration(Apply{Source: "test", Docs: next}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openT(t, dir, Options{}) // read back what was sealed
	cur := s.Current()
	if len(cur.Docs) != len(next) {
		t.Fatalf("%d documents after the change, want %d", len(cur.Docs), len(next))
	}
	if got := tagOf(cur.Get(schema.KindPolicy, next[197].ID)); got != "changed" {
		t.Fatalf("changed document reads back with tag %q", got)
	}
	if got := tagOf(cur.Get(schema.KindPolicy, next[198].ID)); got != "fill" {
		t.Fatalf("unchanged document reads back with tag %q", got)
	}
}

// BenchmarkFirstApply10000 is the store's part of a first apply: 10,000
// new policies committed into a fresh store (fsync on), a new store each
// time. It reports the pages the transaction wrote and the process's CPU
// per apply.
func BenchmarkFirstApply10000(b *testing.B) {
	var pages int64
	var cpu time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		s := openT(b, keeperDir(b), Options{})
		docs := generationDocs(b, 10_000, fmt.Sprint("first-", n))
		before := s.db.Stats()
		c0 := processCPU()
		b.StartTimer()
		if _, err := s.ApplyGeneration(Apply{Source: "bench", Docs: docs}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += processCPU() - c0
		after := s.db.Stats()
		diff := after.Sub(&before)
		pages += diff.TxStats.GetPageCount()
		s.Close()
		n++
		b.StartTimer()
	}
	b.ReportMetric(float64(pages)/float64(n), "pages/op")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(n), "cpu-ms/op")
}

// processCPU is the CPU time (user and system, all threads) the process
// has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
