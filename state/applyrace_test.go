package state

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestConcurrentApplyCurrent: applies from several goroutines (the API's
// local apply and a bundle source run side by side) move Current forward
// only, and leave it on the newest committed generation.
func TestConcurrentApplyCurrent(t *testing.T) {
	s := openT(t, keeperDir(t), Options{NoSync: true, KeepGenerations: 2})
	docs := generationDocs(t, 1, "x")
	var done atomic.Bool
	var watch sync.WaitGroup
	watch.Go(func() {
		var last uint64
		for !done.Load() {
			g := s.Current().Meta.Generation
			if g < last {
				t.Errorf("Current went back from generation %d to %d", last, g)
				return
			}
			last = g
		}
	})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 300 {
				if _, err := s.ApplyGeneration(Apply{Source: "local", Docs: docs}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	done.Store(true)
	watch.Wait()
	gens, err := s.Generations()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.Current().Meta.Generation, gens[0].Generation; got != want {
		t.Errorf("Current is generation %d, the database's newest is %d", got, want)
	}
}
