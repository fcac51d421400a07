package schema

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// validateRefused checks that data is refused with an Errors naming name,
// and returns the error text.
func validateRefused(t *testing.T, name string, data []byte) string {
	t.Helper()
	d, err := Validate(name, data)
	if err == nil {
		t.Fatalf("Validate accepted %.80q as %+v", data, d)
	}
	var errs Errors
	if !errors.As(err, &errs) || len(errs) == 0 {
		t.Fatalf("error is %T %v, want Errors", err, err)
	}
	for _, is := range errs {
		if is.File != name {
			t.Errorf("issue %q does not name the file %s", is, name)
		}
	}
	return err.Error()
}

func TestTruncatedDocuments(t *testing.T) {
	for name, doc := range designExamples {
		// Every proper prefix is broken JSON or an incomplete document.
		for n := 0; n < len(doc); n++ {
			if strings.TrimSpace(doc[n:]) == "" {
				break
			}
			validateRefused(t, name, []byte(doc[:n]))
		}
	}
	msg := validateRefused(t, "p.json", []byte(designExamples[policy][:120]))
	if !strings.Contains(msg, "not valid JSON") {
		t.Errorf("truncated document: %s, want it to say not valid JSON", msg)
	}
}

func TestBinaryDocuments(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		b := make([]byte, rng.IntN(4096))
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		validateRefused(t, "blob.bin", b)
	}
	// A valid document with a NUL or invalid UTF-8 inside a string.
	for _, bad := range []string{"\x00", "\xff\xfe", "\xc3\x28"} {
		doc := strings.Replace(designExamples[policy], "Developers", "Dev"+bad, 1)
		validateRefused(t, policy, []byte(doc))
	}
	msg := validateRefused(t, "x.json", []byte{0x1f, 0x8b, 0x08, 0x00}) // gzip magic
	if !strings.Contains(msg, "not valid") {
		t.Errorf("gzip bytes: %s", msg)
	}
}

// allocsOf reports the bytes allocated by one call of f.
func allocsOf(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestHostileSizes: oversized and deeply nested documents are refused
// before any parser sees them, so what they cost is bounded by a scan of
// their bytes: a few kilobytes of allocation, whatever their size.
func TestHostileSizes(t *testing.T) {
	deepArray := strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000)
	deepObject := strings.Repeat(`{"a":`, 10_000) + "1" + strings.Repeat("}", 10_000)
	deepInSpec := `{"kind":"Policy","id":"x","spec":{"name":"n","type":"CommandLine","status":"off","controls":["deny"],"filters":{"users":` +
		strings.Repeat("[", 10_000) + strings.Repeat("]", 10_000) + `}}}`
	unclosed := `{"kind":"Policy","id":"x","spec":` + strings.Repeat("[", 10_000)
	huge := make([]byte, 50<<20)
	copy(huge, designExamples[policy])
	for i := len(designExamples[policy]); i < len(huge); i++ {
		huge[i] = ' '
	}
	justOver := append([]byte(designExamples[policy]), make([]byte, MaxDocumentSize)...)
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"10k nested arrays", []byte(deepArray), ErrTooDeep},
		{"10k nested objects", []byte(deepObject), ErrTooDeep},
		{"10k nested in a policy", []byte(deepInSpec), ErrTooDeep},
		{"10k unclosed", []byte(unclosed), ErrTooDeep},
		{"50 MB", huge, ErrTooLarge},
		{"1 MiB and a bit", justOver, ErrTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			cost := allocsOf(func() { _, err = Validate("big.json", tc.data) })
			if err == nil || !strings.Contains(err.Error(), tc.want.Error()) {
				t.Fatalf("err = %.200v, want %v", err, tc.want)
			}
			if cost > 64<<10 {
				t.Errorf("refusing it allocated %d bytes, want under 64 KiB (refused before parsing)", cost)
			}
		})
	}
}

// TestTooManyValues: below MaxDocumentSize, a document can still hold
// enough values to make CUE slow (its lists and errors cost more than
// linear time). Such documents are refused while parsing, before CUE.
func TestTooManyValues(t *testing.T) {
	mk := func(body string) []byte {
		return []byte(`{"kind":"Policy","id":"x","spec":{"name":"n","type":"CommandLine","status":"off","controls":["deny"],"filters":{` + body + `}}}`)
	}
	ints := mk(`"users":[` + strings.Repeat(`1,`, 400_000) + `1]`)
	keys := strings.Builder{}
	for i := 0; keys.Len() < 900_000; i++ {
		keys.WriteString(`"k` + strconv.Itoa(i) + `":1,`)
	}
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"400k ints in a string list", ints, ErrTooManyValues},
		{"100k keys", mk(keys.String() + `"z":1`), ErrTooManyValues},
		{"10001 strings", mk(`"users":[` + strings.Repeat(`"u",`, MaxValues) + `"u"]`), ErrTooManyValues},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.data) > MaxDocumentSize {
				t.Fatalf("test document is %d bytes, over MaxDocumentSize", len(tc.data))
			}
			var err error
			cost := allocsOf(func() { _, err = Validate("many.json", tc.data) })
			if err == nil || !strings.Contains(err.Error(), tc.want.Error()) {
				t.Fatalf("err = %.200v, want %v", err, tc.want)
			}
			if cost > 64<<20 {
				t.Errorf("refusing it allocated %d MB, want under 64 MB", cost>>20)
			}
		})
	}
	// The largest document that gets through to CUE, full of errors, is
	// still answered with a bounded amount of memory.
	worst := mk(`"users":[` + strings.Repeat(`1,`, MaxValues-20) + `1]`)
	var err error
	cost := allocsOf(func() { _, err = Validate("worst.json", worst) })
	var errs Errors
	if !errors.As(err, &errs) || len(errs) < MaxValues-20 {
		t.Fatalf("got %d issues, want one per element", len(errs))
	}
	if cost > 512<<20 {
		t.Errorf("worst admitted document allocated %d MB, want under 512 MB", cost>>20)
	}
	// A large but legitimate policy validates.
	var apps strings.Builder
	for i := 0; i < 3000; i++ {
		apps.WriteString(`{"path":"/opt/app/bin/tool*","sha256":"` + strings.Repeat("ab", 32) + `"},`)
	}
	if _, err := Validate("big.json", mk(`"applications":[`+apps.String()+`{"path":"/x"}]`)); err != nil {
		t.Errorf("policy with 3001 applications: %.300v", err)
	}
}

func TestDuplicateKeys(t *testing.T) {
	for _, doc := range []string{
		`{"kind":"Policy","kind":"Policy","id":"x","spec":{"name":"n","type":"CommandLine","status":"off","controls":["deny"],"filters":{}}}`,
		`{"kind":"Policy","id":"x","spec":{"name":"n","type":"CommandLine","status":"off","status":"enforce","controls":["deny"],"filters":{}}}`,
	} {
		msg := validateRefused(t, "dup.json", []byte(doc))
		if !strings.Contains(msg, "duplicate key") {
			t.Errorf("%s: %s, want duplicate key", doc, msg)
		}
	}
}

func TestNotAnObject(t *testing.T) {
	for _, doc := range []string{`[]`, `"Policy"`, `null`, `42`, `{}`, ``, ` `, `{"kind":"Policy"}`, `{"kind":"Policy","id":"x","spec":[]}`, `{"kind":"Policy","id":"x","spec":null}`} {
		validateRefused(t, "x.json", []byte(doc))
	}
}
