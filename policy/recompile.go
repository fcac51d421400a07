package policy

import (
	"maps"
	"slices"
	"strings"

	"warden/schema"
)

// Recompile is Compile of docs for an index that replaces prev (nil:
// none). Unchanged policies are not compiled again: a document that is
// prev's at the same place in docs takes prev's compiled policy, others
// come from the memo. And when the policies keep their ids (so each keeps
// its place in the order), the new index is prev's buckets patched where a
// few policies changed what they are indexed by (patched), sharing the
// rest, which is immutable: a generation that changes 10 of 10,000
// policies compiles 10 and copies a few tree paths.
func Recompile(prev *Index, docs []*schema.Document) (*Index, error) {
	all, per, ascending, errs := compileAll(docs, prev)
	if errs != nil {
		return nil, errs
	}
	if !ascending && !slices.IsSortedFunc(all, byID) { // all is in docs' order
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
	ix := &Index{src: docs, per: per, ascending: ascending}
	if prev != nil && sameIDs(prev.policies, on) && sameIDs(prev.off, off) {
		if b, ok := patched(prev, on); ok {
			ix.policies, ix.off, ix.buckets = on, off, b
			return ix, nil
		}
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

// maxPatched bounds the policies patched into prev's buckets; beyond it
// the index is built anew.
const maxPatched = 64

// patched returns prev's buckets with each policy of next put where add
// would put it, next holding the same ids as prev.policies in the same
// order. Only the paths that change are copied; prev is not changed. The
// result indexes the same policies at the same places as a new build, in
// trees that may be shaped differently (an emptied node stays), which no
// lookup can tell. ok is false when too many policies changed places.
func patched(prev *Index, next []*compiled) (b [4]bucket, ok bool) {
	b = prev.buckets
	var own [4]bool // b[i].sha is a copy of prev's
	n := 0
	for k, p := range next {
		q := prev.policies[k]
		if p == q {
			continue
		}
		ap, aq := actionIndex[ActionOf[p.typ]], actionIndex[ActionOf[q.typ]]
		pa, qa := placement(p), placement(q)
		if ap == aq && slices.Equal(pa, qa) {
			continue
		}
		if n++; n > maxPatched {
			return b, false
		}
		i := int32(k)
		for _, a := range qa {
			b[aq].remove(a, i, &own[aq])
		}
		if ap != aq {
			b[aq].all = without(b[aq].all, i)
			b[ap].all = with(b[ap].all, i)
		}
		for _, a := range pa {
			b[ap].put(a, i, &own[ap])
		}
	}
	return b, true
}

// put and remove change b's fields to copies: what prev holds stays.
func (b *bucket) put(a anchor, i int32, own *bool) {
	switch a.where {
	case inTarget:
		b.target = *b.target.with(a.key, i)
	case inApp:
		b.app = *b.app.with(a.key, i)
	case inSHA:
		b.ownSHA(own)
		b.sha[a.key] = with(b.sha[a.key], i)
	case inAny:
		b.any = with(b.any, i)
	}
}

func (b *bucket) remove(a anchor, i int32, own *bool) {
	switch a.where {
	case inTarget:
		b.target = *b.target.without(a.key, i)
	case inApp:
		b.app = *b.app.without(a.key, i)
	case inSHA:
		b.ownSHA(own)
		if rest := without(b.sha[a.key], i); len(rest) > 0 {
			b.sha[a.key] = rest
		} else {
			delete(b.sha, a.key)
		}
	case inAny:
		b.any = without(b.any, i)
	}
}

func (b *bucket) ownSHA(own *bool) {
	if !*own {
		b.sha, *own = maps.Clone(b.sha), true
	}
}

// with returns a copy of the ascending items with i in it (once).
func with(items []int32, i int32) []int32 {
	at, found := slices.BinarySearch(items, i)
	if found {
		return items
	}
	return slices.Insert(slices.Clip(slices.Clone(items)), at, i)
}

// without returns a copy of the ascending items without i.
func without(items []int32, i int32) []int32 {
	at, found := slices.BinarySearch(items, i)
	if !found {
		return items
	}
	return slices.Delete(slices.Clone(items), at, at+1)
}

func sameIDs(was, next []*compiled) bool {
	return slices.EqualFunc(was, next, func(a, b *compiled) bool { return a == b || a.id == b.id })
}
