package policy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

var fastDecodeCases = []struct {
	name string
	body string
	fast bool // decodeFast takes it (otherwise encoding/json does)
}{
	{"typical", `{"user": "dave", "groups": ["developers"], "machine": "ws-17", "sessionId": "s-1", "action": "elevate", "application": {"path": "/usr/bin/tool-1-x"}}`, true},
	{"every field", `{"user":"u","groups":[],"machine":"m","sessionId":"s","action":"file-access","application":{"path":"/a","sha256":"AB","commandLine":"a b","publisher":"p","parent":"/p"},"target":{"path":"/t","write":true},"justification":"j","mfaCode":"123456","requestedSeconds":-0}`, true},
	{"white space", " \t\n{ \"user\" :\r\"u\" , \"groups\" : [ \"a\" , \"b\" ] , \"requestedSeconds\" : 90 , \"target\" : { \"write\" : false } }\n ", true},
	{"repeated keys merge", `{"user":"a","user":"b","application":{"path":"/x"},"application":{"sha256":"y"},"target":{"path":"/t"},"target":{"write":true},"groups":["a","b"],"groups":["c"]}`, true},
	{"empty object", `{}`, true},
	{"key in another case", `{"User":"u"}`, false},
	{"unknown key", `{"user":"u","mfaVerified":true}`, false},
	{"escape", `{"user":"a\"b"}`, false},
	{"non-ASCII", `{"user":"é"}`, false},
	{"null", `{"groups":null}`, false},
	{"time", `{"time":"2025-06-02T10:00:00Z"}`, false},
	{"fraction", `{"requestedSeconds":1.5}`, false},
	{"exponent", `{"requestedSeconds":1e3}`, false},
	{"leading zero", `{"requestedSeconds":01}`, false},
	{"huge number", `{"requestedSeconds":1234567890123456789012}`, false},
	{"string for number", `{"requestedSeconds":"5"}`, false},
	{"trailing data", `{"user":"u"} {}`, false},
	{"trailing comma", `{"user":"u",}`, false},
	{"literal run on", `{"target":{"write":truex}}`, false},
	{"list", `["user"]`, false},
	{"truncated", `{"user":"u"`, false},
}

// What decodeFast takes, encoding/json decodes to the same request; what
// it leaves, DecodeRequest still answers (as encoding/json does).
func TestDecodeFastAgreesWithJSON(t *testing.T) {
	for _, tt := range fastDecodeCases {
		t.Run(tt.name, func(t *testing.T) {
			fast, ok := decodeFast([]byte(tt.body))
			if ok != tt.fast {
				t.Fatalf("decodeFast took it: %v, want %v", ok, tt.fast)
			}
			slow, err := decodeJSON([]byte(tt.body))
			if ok {
				if err != nil {
					t.Fatalf("decodeFast took what encoding/json refuses (%v)", err)
				}
				if !reflect.DeepEqual(fast, slow) {
					t.Errorf("decodeFast %+v\nencoding/json %+v", fast, slow)
				}
			}
		})
	}
}

// The errors a caller sees are encoding/json's, naming the field, as
// before decodeFast.
func TestDecodeRequestErrorsUnchanged(t *testing.T) {
	for body, want := range map[string]string{
		`{"user":"u","mfaVerified":true}`:                                "request: mfaVerified: unknown field",
		`{"user":"u","action":"elevate","requestedSeconds":"5"}`:         "request: requestedSeconds: must be int, not string",
		`{"user":"u","action":"elevate","application":{"path":"/a"}} {}`: "request: unexpected data after the JSON object",
		`{"user":"u","action":"elevate"}`:                                "request: application.path: required for action elevate",
	} {
		_, err := DecodeRequest(bytes.NewReader([]byte(body)))
		if err == nil || err.Error() != want {
			t.Errorf("%s: error %v, want %q", body, err, want)
		}
	}
}

func FuzzDecodeFast(f *testing.F) {
	for _, tt := range fastDecodeCases {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := decodeFast(data)
		if !ok {
			return
		}
		slow, err := decodeJSON(data)
		if err != nil {
			t.Fatalf("decodeFast took what encoding/json refuses (%v): %q", err, data)
		}
		if !reflect.DeepEqual(fast, slow) {
			a, _ := json.Marshal(fast)
			b, _ := json.Marshal(slow)
			t.Fatalf("%q:\ndecodeFast    %s\nencoding/json %s", data, a, b)
		}
	})
}

// Inner benchmark: the typical request, decoded both ways.
func BenchmarkDecodeRequest(b *testing.B) {
	body := []byte(fastDecodeCases[0].body)
	b.Run("decodeFast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			decodeFast(body)
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			decodeJSON(body)
		}
	})
}
