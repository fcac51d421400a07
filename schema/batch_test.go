package schema

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// corpus returns every document the schema tests know: the DESIGN.md
// examples, the spec cases, the fixtures, the fuzz corpora, and
// generated policies, valid and broken.
func corpus(t *testing.T) [][]byte {
	t.Helper()
	var out [][]byte
	for _, d := range designExamples {
		out = append(out, []byte(d))
	}
	for _, d := range specCases {
		out = append(out, []byte(d))
	}
	fixtures, err := filepath.Glob("../fixtures/desired/*/*.json")
	if err != nil {
		t.Fatal(err)
	}
	more, _ := filepath.Glob("../fixtures/desired/*.json")
	seeds, _ := filepath.Glob("testdata/fuzz/*/*")
	for _, p := range append(append(fixtures, more...), seeds...) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(p, "testdata/fuzz") {
			out = append(out, data)
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			if q, ok := strings.CutPrefix(line, "[]byte("); ok {
				s, err := strconv.Unquote(strings.TrimSuffix(q, ")"))
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				out = append(out, []byte(s))
			}
		}
	}
	for i := range 100 {
		doc := string(policyDoc(5_000_000 + i))
		switch i % 5 {
		case 1:
			doc = strings.Replace(doc, `"enforce"`, `"on"`, 1)
		case 3:
			doc = strings.Replace(doc, `"durationSeconds": 900`, `"durationSeconds": 9`, 1)
		}
		out = append(out, []byte(doc))
	}
	if len(out) < 150 {
		t.Fatalf("corpus has only %d documents", len(out))
	}
	return out
}

// answer renders Validate's answer for a document: the document (key, spec
// and raw bytes) or the whole error.
func answer(d *Document, err error) string {
	if err != nil {
		return "error: " + err.Error()
	}
	spec, _ := json.Marshal(d.Spec)
	return fmt.Sprintf("%s %s raw=%t", d.Key(), spec, d.Raw != nil)
}

// TestBatchAgreesWithValidate: ValidateEach, which checks documents in
// batches of one CUE evaluation and falls back to one evaluation each
// when a batch fails, answers every document exactly as Validate does on
// its own, error messages included, whether its batches pass or fail.
func TestBatchAgreesWithValidate(t *testing.T) {
	docs := corpus(t)
	files := make([]File, len(docs))
	want := make([]string, len(docs))
	var valid []int
	for i, d := range docs {
		files[i] = File{Name: fmt.Sprintf("dir/f%d.json", i), Data: d}
		resetCache()
		doc, err := Validate(files[i].Name, d)
		want[i] = answer(doc, err)
		if err == nil {
			valid = append(valid, i)
		}
	}
	if len(valid) < 50 || len(valid) == len(docs) {
		t.Fatalf("%d of %d documents valid: the corpus needs both", len(valid), len(docs))
	}
	check := func(t *testing.T, idx []int) {
		t.Helper()
		fs := make([]File, len(idx))
		for k, i := range idx {
			fs[k] = files[i]
		}
		resetCache()
		got, errs, err := ValidateEach(context.Background(), fs)
		if err != nil {
			t.Fatal(err)
		}
		for k, i := range idx {
			if a := answer(got[k], errs[k]); a != want[i] {
				t.Errorf("%s (%.60q):\n got %s\nwant %s", files[i].Name, docs[i], a, want[i])
			}
		}
	}
	all := make([]int, len(docs))
	for i := range all {
		all[i] = i
	}
	t.Run("mixed", func(t *testing.T) { check(t, all) })
	t.Run("valid only", func(t *testing.T) { check(t, valid) })
	// ValidateEach makes its batches smaller when there are few documents
	// per core; batches of batchSize, whatever the cores, directly:
	t.Run("full batches", func(t *testing.T) {
		for n, idx := range [][]int{valid, all} {
			before := batchAccepted.Load()
			docs := make([]*Document, len(files))
			errs := make([]error, len(files))
			sums := make([][32]byte, len(files))
			for _, i := range idx {
				sums[i] = sha256.Sum256(files[i].Data)
			}
			for k := 0; k < len(idx); k += batchSize {
				validateBatch(files, sums, idx[k:min(k+batchSize, len(idx))], docs, errs, true)
			}
			for _, i := range idx {
				if a := answer(docs[i], errs[i]); a != want[i] {
					t.Errorf("%s (%.60q):\n got %s\nwant %s", files[i].Name, files[i].Data, a, want[i])
				}
			}
			if n == 0 && batchAccepted.Load() == before {
				t.Fatal("no batch passed: the batched path was not tested")
			}
		}
	})
}

// TestInvalidNotCheckedTwice: after a batch fails, a worker checks the
// next documents one by one, so a generation of invalid documents is not
// evaluated twice over: at most one failed batch per worker.
func TestInvalidNotCheckedTwice(t *testing.T) {
	files := make([]File, 20*batchSize)
	for i := range files {
		bad := strings.Replace(string(policyDoc(6_000_000+i)), `"enforce"`, `"on"`, 1)
		files[i] = File{Name: fmt.Sprintf("policies/p%d.json", i), Data: []byte(bad)}
	}
	resetCache()
	before := batchRefused.Load()
	_, errs, err := ValidateEach(context.Background(), files)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range errs {
		if e == nil || !strings.Contains(e.Error(), `spec.status: invalid value "on" (must be one of`) {
			t.Fatalf("%s: %v", files[i].Name, e)
		}
	}
	workers := runtime.GOMAXPROCS(0)
	if got := batchRefused.Load() - before; got == 0 || got > int64(workers*batchSize) {
		t.Fatalf("%d documents in failed batches, want 1 to %d (one batch per worker)", got, workers*batchSize)
	}
}

// FuzzBatchAgrees: a document checked inside a batch, between valid
// documents of its kind and others, gets exactly Validate's answer, and so
// do its neighbours. (validateBatch does not read the cache, so every
// document is evaluated again whatever Validate cached.)
func FuzzBatchAgrees(f *testing.F) {
	for _, d := range designExamples {
		f.Add([]byte(d))
	}
	for _, d := range specCases {
		f.Add([]byte(d))
	}
	files := []File{{Name: "a.json", Data: policyDoc(7_000_001)}, {Name: "fuzz.json"},
		{Name: "b.json", Data: policyDoc(7_000_002)}, {Name: "c.json", Data: []byte(designExamples[job])}}
	want := make([]string, len(files))
	for i, f := range files {
		d, err := Validate(f.Name, f.Data)
		want[i] = answer(d, err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		files := append([]File(nil), files...)
		want := append([]string(nil), want...)
		files[1].Data = data
		d, err := Validate(files[1].Name, data)
		want[1] = answer(d, err)
		docs, errs := make([]*Document, len(files)), make([]error, len(files))
		sums := make([][32]byte, len(files))
		for i, f := range files {
			sums[i] = sha256.Sum256(f.Data)
		}
		validateBatch(files, sums, []int{0, 1, 2, 3}, docs, errs, true)
		for i := range files {
			if got := answer(docs[i], errs[i]); got != want[i] {
				t.Fatalf("%s:\n got %s\nwant %s", files[i].Name, got, want[i])
			}
		}
	})
}
