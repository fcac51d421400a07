package schema

import (
	"context"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
)

// File is a named document, as read from disk or a bundle.
type File struct {
	Name string
	Data []byte
}

// ValidateMany validates files on all cores and returns the valid
// documents in input order. Its error (Errors) lists every broken rule of
// every file, and also a kind/id that appears twice.
func ValidateMany(files []File) ([]*Document, error) {
	docs, errs, _ := ValidateEach(context.Background(), files)
	return collect(files, docs, errs)
}

// ValidateEach validates files on all cores. docs[i] and errs[i] are
// Validate's answers for files[i]. When ctx ends it stops early and returns
// ctx.Err(); the answers are then incomplete.
func ValidateEach(ctx context.Context, files []File) (docs []*Document, errs []error, err error) {
	docs = make([]*Document, len(files))
	errs = make([]error, len(files))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(files)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := int(next.Add(1) - 1); j < len(files) && ctx.Err() == nil; j = int(next.Add(1) - 1) {
				docs[j], errs[j] = Validate(files[j].Name, files[j].Data)
			}
		}()
	}
	wg.Wait()
	return docs, errs, ctx.Err()
}

// collect is ValidateMany's answer from ValidateEach's.
func collect(files []File, docs []*Document, errs []error) ([]*Document, error) {
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
