package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// benchTamper: on an agent with 100 materialized policies, loosen a
// file's mode or overwrite its content, and time until the agent has put
// it back (mode 0600 and the original bytes).
func benchTamper() {
	a := startAgent(nil)
	defer a.stop()
	docs, err := os.MkdirTemp("", "warden-e2e-docs-")
	check(err)
	writeDocs(docs, 100, 0, 1)
	a.applyOne(a.build(docs, 1), 1, 101)
	os.RemoveAll(docs)
	var modes, contents []time.Duration
	samples := *runs * 10
	for i := 0; i < samples; i++ {
		p := filepath.Join(a.Root, "policies", fmt.Sprintf("p-%05d.json", i%100))
		orig, err := os.ReadFile(p)
		check(err)
		time.Sleep(20 * time.Millisecond) // let the previous correction settle
		t0 := time.Now()
		check(os.Chmod(p, 0o666))
		waitFor(10*time.Second, "mode restored", func() bool {
			fi, err := os.Stat(p)
			return err == nil && fi.Mode().Perm() == 0o600
		})
		modes = append(modes, time.Since(t0))
		time.Sleep(20 * time.Millisecond)
		t0 = time.Now()
		check(os.WriteFile(p, []byte(`{"kind": "Policy", "id": "evil"}`), 0o600))
		waitFor(10*time.Second, "content restored", func() bool {
			data, err := os.ReadFile(p)
			return err == nil && bytes.Equal(data, orig)
		})
		contents = append(contents, time.Since(t0))
	}
	fmt.Printf("tamper mode (chmod 0666) to restored: %s\n", summarize(modes))
	fmt.Printf("tamper content (overwrite) to restored: %s\n", summarize(contents))
}
