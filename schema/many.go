package schema

import (
	"context"
	"crypto/sha256"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
)

// File is a named document, as read from disk or a bundle.
type File struct {
	Name string
	Data []byte
	// Sum, when not zero, is the SHA-256 of Data, computed by the caller
	// (a bundle's files are hashed once, against the manifest), so that
	// validation does not hash them again. It must be Data's: a wrong Sum
	// would answer for other bytes from the cache.
	Sum [32]byte
}

// ValidateMany validates files on all cores and returns the valid
// documents in input order. Its error (Errors) lists every broken rule of
// every file, and also a kind/id that appears twice.
func ValidateMany(files []File) ([]*Document, error) {
	docs, errs, _ := ValidateEach(context.Background(), files)
	return collect(files, docs, errs)
}

// ValidateEach validates files on all cores. docs[i] and errs[i] are
// Validate's answers for files[i]. Documents validated before are answered
// from the cache first, in one pass; only the others reach the workers, so
// a generation that changes 10 of 10,000 documents evaluates 10. When ctx
// ends it stops early and returns ctx.Err(); the answers are then
// incomplete.
func ValidateEach(ctx context.Context, files []File) (docs []*Document, errs []error, err error) {
	docs = make([]*Document, len(files))
	errs = make([]error, len(files))
	sums := make([][32]byte, len(files))
	var todo []int
	for j, f := range files {
		sums[j] = f.Sum
		if sums[j] == ([32]byte{}) {
			sums[j] = sha256.Sum256(f.Data)
		}
		if docs[j] = cache.get(sums[j]); docs[j] == nil {
			todo = append(todo, j)
		}
	}
	defer relaxGC(len(todo))()
	workers := min(runtime.GOMAXPROCS(0), len(todo))
	// Batches of batchSize, smaller when there are too few documents to
	// keep every worker busy.
	size := int64(min(batchSize, (len(todo)+workers-1)/max(workers, 1)))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			batch := true
			for ctx.Err() == nil {
				k := int(next.Add(size) - size)
				if k >= len(todo) {
					return
				}
				batch = validateBatch(files, sums, todo[k:min(k+int(size), len(todo))], docs, errs, batch)
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
