package policy

import (
	"bytes"
	"slices"
	"strings"
)

// radix is a compressed trie of literal path prefixes. Each node holds the
// policies whose pattern starts with the node's whole key; a lookup walks
// the request's path once and visits only the policies whose prefix is a
// prefix of it, so its cost grows with the path's length, not with the
// number of policies.
type radix struct {
	label    string // edge label from the parent
	items    []int32
	first    []byte // first byte of each child's label, for IndexByte
	children []*radix
}

func (n *radix) insert(key string, item int32) {
	for {
		if key == "" {
			if len(n.items) == 0 || n.items[len(n.items)-1] != item {
				n.items = append(n.items, item)
			}
			return
		}
		i := bytes.IndexByte(n.first, key[0])
		if i < 0 {
			n.first = append(n.first, key[0])
			n.children = append(n.children, &radix{label: key, items: []int32{item}})
			return
		}
		c := n.children[i]
		l := commonPrefix(c.label, key)
		if l < len(c.label) {
			mid := &radix{label: c.label[:l], first: []byte{c.label[l]}, children: []*radix{c}}
			c.label = c.label[l:]
			n.children[i] = mid
			c = mid
		}
		n, key = c, key[l:]
	}
}

func commonPrefix(a, b string) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// next returns the child whose label starts s, and s after that label, or
// nil when no child continues s.
func (n *radix) next(s string) (*radix, string) {
	if s == "" {
		return nil, s
	}
	i := bytes.IndexByte(n.first, s[0])
	if i < 0 {
		return nil, s
	}
	c := n.children[i]
	if !strings.HasPrefix(s, c.label) {
		return nil, s
	}
	return c, s[len(c.label):]
}

// with returns n with item added under key (the rest of the key after
// n's label), as insert would add it, without changing n: the nodes on
// key's path are copied, the others shared.
func (n *radix) with(key string, item int32) *radix {
	c := *n
	if key == "" {
		c.items = with(n.items, item)
		return &c
	}
	i := bytes.IndexByte(n.first, key[0])
	if i < 0 {
		c.first = append(slices.Clip(n.first), key[0])
		c.children = append(slices.Clip(n.children), &radix{label: key, items: []int32{item}})
		return &c
	}
	c.children = slices.Clone(n.children)
	child := n.children[i]
	l := commonPrefix(child.label, key)
	if l < len(child.label) {
		rest := *child
		rest.label = child.label[l:]
		child = &radix{label: child.label[:l], first: []byte{child.label[l]}, children: []*radix{&rest}}
	}
	c.children[i] = child.with(key[l:], item)
	return &c
}

// without returns n with item removed from the node at key, without
// changing n. A node left without items stays (a lookup passes it by).
func (n *radix) without(key string, item int32) *radix {
	c := *n
	if key == "" {
		c.items = without(n.items, item)
		return &c
	}
	i := bytes.IndexByte(n.first, key[0])
	if i < 0 || !strings.HasPrefix(key, n.children[i].label) {
		return n
	}
	c.children = slices.Clone(n.children)
	c.children[i] = n.children[i].without(key[len(n.children[i].label):], item)
	return &c
}
