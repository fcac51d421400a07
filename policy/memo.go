package policy

import (
	"sync"

	"warden/schema"
)

// A compiled policy depends only on its document, and is never changed
// after compilePolicy, so indexes share them: a generation that changes 10
// of 10,000 policies compiles 10. The memo is keyed by the document's id
// and SHA-256 (the validation cache hands out the same documents across
// generations, so the unchanged ones hit), holds only policies that
// compiled, and is dropped whole when it outgrows its bound.
type memo struct {
	mu sync.Mutex
	m  map[memoKey]*compiled
}

type memoKey struct {
	hash [32]byte
	id   string
}

// memoMax bounds the memo: two generations of the largest bundle the
// agent takes (10,000 documents), with room to spare.
const memoMax = 30_000

var compiledMemo = &memo{m: map[memoKey]*compiled{}}

// memoized fills known[i], for each i of which, with the memo's compiled
// policy for docs[i] (nil where it has none), under one lock.
func memoized(docs []*schema.Document, which []int, known []*compiled) {
	if len(which) == 0 {
		return
	}
	compiledMemo.mu.Lock()
	defer compiledMemo.mu.Unlock()
	for _, i := range which {
		if d := docs[i]; d.Hash != ([32]byte{}) {
			known[i] = compiledMemo.m[memoKey{d.Hash, d.ID}]
		}
	}
}

// compileDoc is compilePolicy through the memo. Documents without a
// content hash (built by hand, not validated) are always compiled.
func compileDoc(d *schema.Document, spec *schema.PolicySpec) (*compiled, schema.Errors) {
	if d.Hash == ([32]byte{}) {
		return compilePolicy(d.ID, spec)
	}
	k := memoKey{d.Hash, d.ID}
	compiledMemo.mu.Lock()
	p := compiledMemo.m[k]
	compiledMemo.mu.Unlock()
	if p != nil {
		return p, nil
	}
	p, errs := compilePolicy(d.ID, spec)
	if errs != nil {
		return nil, errs
	}
	compiledMemo.mu.Lock()
	if len(compiledMemo.m) >= memoMax {
		clear(compiledMemo.m)
	}
	compiledMemo.m[k] = p
	compiledMemo.mu.Unlock()
	return p, nil
}
