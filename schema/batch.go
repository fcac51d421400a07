package schema

import (
	"sync/atomic"

	"cuelang.org/go/cue"
)

// batchSize is how many documents of one kind validateBatch checks in one
// CUE evaluation. Unifying a list of documents with [...#Policy] costs
// about a fifth less CPU per document than one evaluation each, and
// allocates about half as much (43 KB instead of 78 KB for a 400-byte
// policy): CUE's set-up of an evaluation is shared. Most of that is had by
// 32; a larger batch costs more when it fails.
const batchSize = 32

// batchAccepted and batchRefused count documents in batch evaluations
// that passed and failed, so tests can tell which paths ran.
var batchAccepted, batchRefused atomic.Int64

// validateBatch validates files[j] for each j in idx (none of them in the
// cache), writing Validate's answers to docs[j] and errs[j]. When batch is
// true the documents of each kind are checked together in one evaluation;
// if that one fails, each is checked again on its own, so that every
// answer, and every error message, is exactly Validate's. When batch is
// false each is checked on its own at once. clean reports whether every
// document was valid: a caller whose last batch failed checks the next
// documents one by one until they are clean again, so that a bundle of
// invalid documents does not pay for each twice.
func validateBatch(files []File, sums [][32]byte, idx []int, docs []*Document, errs []error, batch bool) (clean bool) {
	clean = true
	byKind := map[string][]int{}
	ps := make(map[int]parsed, len(idx))
	for _, j := range idx {
		p, err := parse(files[j].Name, files[j].Data)
		if err != nil {
			errs[j], clean = err, false
			continue
		}
		ps[j] = p
		byKind[p.kind] = append(byKind[p.kind], j)
	}
	if len(ps) == 0 {
		return clean
	}
	evaluations.Add(int64(len(ps)))
	v := borrow()
	defer giveBack(v)
	for _, kind := range Kinds {
		group := byKind[kind]
		if len(group) == 0 {
			continue
		}
		var list cue.Value
		if batch && len(group) > 1 {
			trees := make([]any, len(group))
			for i, j := range group {
				trees[i] = ps[j].tree
			}
			list = v.lists[kind].Unify(v.ctx.Encode(trees))
			if list.Validate(cue.Concrete(true)) != nil {
				list = cue.Value{}
				batchRefused.Add(int64(len(group)))
			} else {
				batchAccepted.Add(int64(len(group)))
			}
		}
		for i, j := range group {
			f := files[j]
			if list.Exists() {
				val := list.LookupPath(cue.MakePath(cue.Index(i)))
				docs[j], errs[j] = accept(f.Name, f.Data, sums[j], ps[j], val)
			} else {
				docs[j], errs[j] = v.validateOne(f.Name, f.Data, sums[j], ps[j])
			}
			if errs[j] != nil {
				clean = false
			}
		}
	}
	return clean
}
