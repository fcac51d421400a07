package state

import (
	"encoding/base64"
	"encoding/json"
)

// appendStored appends what json.Marshal(stored{Kind: kind, ID: id, Raw:
// raw, Spec: spec}) writes, byte for byte, given spec as json.Marshal
// wrote it (compact, HTML-escaped). A first apply seals 10,000 documents;
// Marshal would reflect over stored and scan the spec again to compact
// it, a third of sealing a document. TestAppendStoredIsMarshal holds the
// two together.
func appendStored(dst []byte, kind, id string, raw []byte, spec json.RawMessage) []byte {
	dst = append(dst, `{"kind":`...)
	dst = appendString(dst, kind)
	dst = append(dst, `,"id":`...)
	dst = appendString(dst, id)
	dst = append(dst, `,"raw":`...)
	if raw == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, raw)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"spec":`...)
	if spec == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, spec...)
	}
	return append(dst, '}')
}

// appendString appends s as json.Marshal writes a string: plain when
// nothing in it needs escaping (kinds and ids never do), by Marshal
// otherwise.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
