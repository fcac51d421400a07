package policy

import (
	"slices"
	"strings"

	"warden/schema"
)

// Recompile is Compile of docs for an index that replaces prev (nil:
// none). Unchanged policies are not compiled again: a document that is
// prev's at the same place in docs takes prev's compiled policy, others
// come from the memo. And when every policy keeps its id, its place in the
// order and the anchors it is indexed by (a changed description, user
// list, control...), the new index shares prev's buckets, which are
// immutable: a generation that changes 10 of 10,000 policies compiles 10
// and builds no index.
func Recompile(prev *Index, docs []*schema.Document) (*Index, error) {
	all, per, errs := compileAll(docs, prev)
	if errs != nil {
		return nil, errs
	}
	if !slices.IsSortedFunc(all, byID) {
		slices.SortFunc(all, byID)
	}
	var on, off []*compiled
	on = make([]*compiled, 0, len(all))
	for _, p := range all {
		if p.status == StatusOff {
			off = append(off, p)
		} else {
			on = append(on, p)
		}
	}
	ix := &Index{src: docs, per: per}
	if prev != nil && samePlaces(prev.policies, on) && sameIDs(prev.off, off) {
		ix.policies, ix.off, ix.buckets = on, off, prev.buckets
		return ix, nil
	}
	for i := range ix.buckets {
		ix.buckets[i].sha = map[string][]int32{}
	}
	ix.off = off
	for _, p := range on {
		ix.add(p)
	}
	return ix, nil
}

func byID(a, b *compiled) int { return strings.Compare(a.id, b.id) }

// samePlaces reports whether next would be indexed exactly as was: the
// same ids in the same order, each with the same action and anchors.
func samePlaces(was, next []*compiled) bool {
	if len(was) != len(next) {
		return false
	}
	for i, p := range next {
		q := was[i]
		if p == q {
			continue
		}
		if p.id != q.id || ActionOf[p.typ] != ActionOf[q.typ] || !slices.Equal(placement(p), placement(q)) {
			return false
		}
	}
	return true
}

func sameIDs(was, next []*compiled) bool {
	return slices.EqualFunc(was, next, func(a, b *compiled) bool { return a.id == b.id })
}
