package schema

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
)

// TestConcurrentValidate runs many goroutines validating valid and invalid
// documents at once (run with -race) and checks every answer against the
// one a single goroutine gets.
func TestConcurrentValidate(t *testing.T) {
	var inputs [][]byte
	for i := 0; i < 40; i++ {
		inputs = append(inputs, policyDoc(1_000_000+i))
		inputs = append(inputs, []byte(strings.Replace(string(policyDoc(2_000_000+i)), `"enforce"`, `"on"`, 1)))
	}
	for _, d := range designExamples {
		inputs = append(inputs, []byte(d))
	}
	answer := func(d []byte) string {
		doc, err := Validate("c.json", d)
		if err != nil {
			return "error: " + err.Error()
		}
		spec, _ := json.Marshal(doc.Spec)
		return doc.Key() + " " + string(spec)
	}
	want := make([]string, len(inputs))
	for i, d := range inputs {
		want[i] = answer(d)
	}
	resetCache()
	const workers = 32
	var wg sync.WaitGroup
	errs := make(chan string, workers*len(inputs))
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for k := range inputs {
				i := (k + w*7) % len(inputs)
				if got := answer(inputs[i]); got != want[i] {
					errs <- fmt.Sprintf("input %d: got %s\nwant %s", i, got, want[i])
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestCacheValidatesChangesOnly: re-validating a set of documents of which
// a few changed evaluates only those.
func TestCacheValidatesChangesOnly(t *testing.T) {
	resetCache()
	files := make([]File, 1000)
	for i := range files {
		files[i] = File{Name: fmt.Sprintf("policies/p%d.json", i), Data: policyDoc(3_000_000 + i)}
	}
	before := evaluations.Load()
	if _, err := ValidateMany(files); err != nil {
		t.Fatal(err)
	}
	if got := evaluations.Load() - before; got != 1000 {
		t.Fatalf("first validation evaluated %d documents, want 1000", got)
	}
	for i := 0; i < 10; i++ {
		files[i*97].Data = policyDoc(4_000_000 + i)
	}
	before = evaluations.Load()
	docs, err := ValidateMany(files)
	if err != nil {
		t.Fatal(err)
	}
	if got := evaluations.Load() - before; got != 10 {
		t.Errorf("re-validation with 10 changes evaluated %d documents, want 10", got)
	}
	if len(docs) != 1000 || docs[97].ID != "bench-policy-4000001" {
		t.Errorf("docs[97] = %s, want the changed document", docs[97].Key())
	}
	// An invalid document is never cached: it is reported every time.
	bad := []byte(`{"kind":"Policy","id":"X"}`)
	for i := 0; i < 2; i++ {
		if _, err := Validate("bad.json", bad); err == nil {
			t.Fatal("invalid document accepted")
		}
	}
}

func TestValidateMany(t *testing.T) {
	files := []File{
		{Name: "policies/a.json", Data: policyDoc(5_000_001)},
		{Name: "policies/bad.json", Data: []byte(`{"kind":"Policy","id":"Bad"}`)},
		{Name: "policies/a-again.json", Data: policyDoc(5_000_001)},
		{Name: "jobs/inventory.json", Data: []byte(designExamples[job])},
		{Name: "broken.json", Data: []byte(`{"kind":`)},
		{Name: "policies/empty.json", Data: []byte(`{"kind":"Policy","id":"empty"}`)},
	}
	docs, err := ValidateMany(files)
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("err = %v, want Errors", err)
	}
	text := err.Error()
	for _, want := range []string{
		"broken.json: not valid JSON",
		"policies/a-again.json: id: duplicate Policy/bench-policy-5000001 (also in policies/a.json)",
		`policies/bad.json: id: invalid value "Bad"`,
		"policies/empty.json: spec: required field is missing",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("errors lack %q:\n%s", want, text)
		}
	}
	for i := 1; i < len(errs); i++ {
		if errs[i-1].File > errs[i].File {
			t.Errorf("issues not sorted by file: %s before %s", errs[i-1].File, errs[i].File)
		}
	}
	if len(docs) != 2 {
		t.Errorf("got %d valid documents, want 2", len(docs))
	}
	if docs, err := ValidateMany(nil); err != nil || len(docs) != 0 {
		t.Errorf("ValidateMany(nil) = %v, %v", docs, err)
	}
}

// TestFixtures: the demo desired state in fixtures/desired validates as
// one set and covers every policy type, status and control.
func TestFixtures(t *testing.T) {
	root := filepath.Join("..", "fixtures", "desired")
	var files []File
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		files = append(files, File{Name: filepath.ToSlash(rel), Data: data})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	docs, err := ValidateMany(files)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	seen := map[string]bool{}
	for i, d := range docs {
		count[d.Kind]++
		dir := map[string]string{KindPolicy: "policies/", KindApprover: "approvers/", KindPlugin: "plugins/", KindJob: "jobs/", KindSettings: "settings.json"}[d.Kind]
		if !strings.HasPrefix(files[i].Name, dir) {
			t.Errorf("%s holds a %s, want it under %s", files[i].Name, d.Kind, dir)
		}
		if d.Kind != KindSettings && files[i].Name != dir+d.ID+".json" {
			t.Errorf("%s holds %s, want the file named for its id", files[i].Name, d.Key())
		}
		if p := d.Policy(); p != nil {
			seen["type "+p.Type] = true
			seen["status "+p.Status] = true
			for _, c := range p.Controls {
				seen["control "+c] = true
			}
		}
	}
	var missing []string
	for _, w := range []string{"type PrivilegeElevation", "type FileAccess", "type CommandLine", "type LeastPrivilege",
		"status enforce", "status monitor", "status monitor-notify", "status off",
		"control allow", "control deny", "control mfa", "control approval", "control justification", "control redirect"} {
		if !seen[w] {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		t.Errorf("fixtures lack %v", missing)
	}
	if count[KindPolicy] < 6 || count[KindApprover] < 2 || count[KindJob] < 2 || count[KindPlugin] < 1 || count[KindSettings] != 1 {
		t.Errorf("fixtures hold %v, want >=6 policies, >=2 approvers, >=2 jobs, a plugin and settings", count)
	}
	for _, name := range []string{"policies/deny-netcat.json", "policies/dev-tools.json"} {
		data, err := os.ReadFile(filepath.Join(root, name))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.TrimSpace(string(data)), designExamples[name]; got != want {
			t.Errorf("%s differs from DESIGN.md:\n%s\nwant\n%s", name, got, want)
		}
	}
	for _, d := range docs {
		if s := d.Settings(); s != nil {
			if strings.Join(s.AllowedHosts, ";") != "localhost;127.0.0.1" || s.Backend != nil {
				t.Errorf("settings = %+v, want allowedHosts localhost;127.0.0.1 and no backend", s)
			}
		}
		if p := d.Plugin(); p != nil && d.ID == "heartbeat" && p.Executable != "Plugins/heartbeat/heartbeat" {
			t.Errorf("heartbeat executable = %s", p.Executable)
		}
	}
}

// A batch relaxes the collector and gives back the settings it found,
// also when batches overlap, and leaves GOGC=off alone.
func TestRelaxGCRestores(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, start := range []int{100, -1, 800} {
		debug.SetGCPercent(start)
		limit := debug.SetMemoryLimit(-1)
		outer := relaxGC(relaxMinDocs)
		inner := relaxGC(relaxMinDocs)
		want := relaxGCPercent
		if start < 0 || start > relaxGCPercent {
			want = start
		}
		if got := readGCPercent(); got != want {
			t.Errorf("GOGC %d: %d during a batch, want %d", start, got, want)
		}
		outer()
		if got := readGCPercent(); got != want {
			t.Errorf("GOGC %d: %d while another batch runs, want %d", start, got, want)
		}
		inner()
		if got := readGCPercent(); got != start {
			t.Errorf("GOGC %d: %d after the batches, want it back", start, got)
		}
		if got := debug.SetMemoryLimit(-1); got != limit {
			t.Errorf("memory limit %d after the batches, want %d", got, limit)
		}
		relaxGC(10)() // a small batch changes nothing
	}
}

// readGCPercent reads GOGC (there is no getter: set and put back).
func readGCPercent() int {
	p := debug.SetGCPercent(-1)
	debug.SetGCPercent(p)
	return p
}
