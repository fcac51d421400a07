package state

import (
	"testing"
	"time"
)

func TestWatchBucketWakesOnGrantChanges(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	ch, cancel := s.WatchBucket(Grants)
	defer cancel()
	expect := func(what string, want bool) {
		t.Helper()
		select {
		case <-ch:
			if !want {
				t.Fatalf("%s: notified, want no notification", what)
			}
		case <-time.After(50 * time.Millisecond):
			if want {
				t.Fatalf("%s: no notification", what)
			}
		}
	}
	if err := s.Put(Grants, "g1", Grant{ID: "g1"}); err != nil {
		t.Fatal(err)
	}
	expect("put", true)
	if err := s.Put(Status, "x", 1); err != nil {
		t.Fatal(err)
	}
	expect("put in another bucket", false)
	if err := s.Delete(Grants, "g1"); err != nil {
		t.Fatal(err)
	}
	expect("delete", true)
	if err := s.Delete(Grants); err != nil {
		t.Fatal(err)
	}
	expect("delete of nothing", false)
	// Two changes before a read coalesce into one notification.
	s.Put(Grants, "a", Grant{ID: "a"})
	s.Put(Grants, "b", Grant{ID: "b"})
	expect("two puts", true)
	expect("two puts, second read", false)
	s.Close()
	if _, ok := <-ch; ok {
		t.Fatal("channel not closed by Close")
	}
}
