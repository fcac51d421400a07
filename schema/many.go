package schema

import (
	"runtime"
	"sort"
	"sync"
)

// File is a named document, as read from disk or a bundle.
type File struct {
	Name string
	Data []byte
}

// ValidateMany validates files on all cores and returns the documents in
// input order. Its error (Errors) lists every broken rule of every file,
// and also a kind/id that appears twice.
func ValidateMany(files []File) ([]*Document, error) {
	docs := make([]*Document, len(files))
	errs := make([]error, len(files))
	workers := min(runtime.GOMAXPROCS(0), len(files))
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				j := i
				i++
				next.Unlock()
				if j >= len(files) {
					return
				}
				docs[j], errs[j] = Validate(files[j].Name, files[j].Data)
			}
		}()
	}
	wg.Wait()
	var all Errors
	seen := map[string]string{}
	out := make([]*Document, 0, len(files))
	for j, err := range errs {
		if err != nil {
			if es, ok := err.(Errors); ok {
				all = append(all, es...)
			} else {
				all = append(all, Issue{File: files[j].Name, Msg: err.Error()})
			}
			continue
		}
		d := docs[j]
		if prev, dup := seen[d.Key()]; dup {
			all = append(all, Issue{File: files[j].Name, Path: "id", Msg: "duplicate " + d.Key() + " (also in " + prev + ")"})
			continue
		}
		seen[d.Key()] = files[j].Name
		out = append(out, d)
	}
	if len(all) > 0 {
		sort.SliceStable(all, func(a, b int) bool { return all[a].File < all[b].File })
		return out, all
	}
	return out, nil
}
