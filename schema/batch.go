package schema

import (
	"sync/atomic"

	"cuelang.org/go/cue"
)

// batchSize is how many documents of one kind validateBatch checks in one
// CUE evaluation. Unifying a list of documents with [...#Policy] costs
// about a sixth less CPU per document than one evaluation each (CUE's
// set-up of an evaluation, and the garbage it leaves, are shared), and
// most of that is had by 32; a larger batch costs more when it fails.
const batchSize = 32

// batchAccepted counts documents accepted by a batch evaluation, so tests
// can tell that the batched path ran.
var batchAccepted atomic.Int64

// validateBatch validates files[j] for each j in idx (none of them in the
// cache), writing Validate's answers to docs[j] and errs[j]. The
// documents of each kind are checked together in one evaluation; if that
// one fails, each is checked again on its own, so that every answer, and
// every error message, is exactly Validate's.
func validateBatch(files []File, sums [][32]byte, idx []int, docs []*Document, errs []error) {
	byKind := map[string][]int{}
	ps := make(map[int]parsed, len(idx))
	for _, j := range idx {
		p, err := parse(files[j].Name, files[j].Data)
		if err != nil {
			errs[j] = err
			continue
		}
		ps[j] = p
		byKind[p.kind] = append(byKind[p.kind], j)
	}
	if len(ps) == 0 {
		return
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
		if len(group) > 1 {
			trees := make([]any, len(group))
			for i, j := range group {
				trees[i] = ps[j].tree
			}
			list = v.lists[kind].Unify(v.ctx.Encode(trees))
			if list.Validate(cue.Concrete(true)) != nil {
				list = cue.Value{}
			} else {
				batchAccepted.Add(int64(len(group)))
			}
		}
		for i, j := range group {
			f := files[j]
			if !list.Exists() {
				docs[j], errs[j] = v.validateOne(f.Name, f.Data, sums[j], ps[j])
				continue
			}
			val := list.LookupPath(cue.MakePath(cue.Index(i)))
			docs[j], errs[j] = accept(f.Name, f.Data, sums[j], ps[j], val)
		}
	}
}
