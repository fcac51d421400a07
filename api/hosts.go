package api

import "strings"

// hostSet is the parsed AllowedHosts list.
type hostSet struct {
	any      bool
	names    map[string]bool
	suffixes []string // ".example.com" for "*.example.com"
}

func newHostSet(hosts []string) *hostSet {
	hs := &hostSet{names: make(map[string]bool, len(hosts))}
	for _, h := range hosts {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "*":
			hs.any = true
		case strings.HasPrefix(h, "*."):
			hs.suffixes = append(hs.suffixes, h[1:])
		case h != "":
			hs.names[h] = true
		}
	}
	return hs
}

// allows reports whether host (without port or brackets) is allowed.
func (hs *hostSet) allows(host string) bool {
	if hs.any {
		return true
	}
	host = strings.ToLower(host)
	if hs.names[host] {
		return true
	}
	for _, suf := range hs.suffixes {
		if len(host) > len(suf) && strings.HasSuffix(host, suf) {
			return true
		}
	}
	return false
}
