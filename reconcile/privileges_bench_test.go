package reconcile

import (
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"warden/state"
)

// The privilege controllers end to end, with real sudo tools, users and
// groups (root only). Each iteration is timed from the change in the store
// (or on the machine) to what an independent fsnotify watcher, or a read of
// /etc/group, sees of the result.
//
//	go test -run '^$' -bench 'Grant|GroupCorrected' -benchtime 100x ./reconcile/

// BenchmarkGrantInEffect: a grant stored (what the engine does after an
// allow decision) -> its drop-in renamed into place, visudo -cf included.
// BenchmarkGrantExpiry: the grant's expiry instant -> the drop-in gone.
func BenchmarkGrantInEffect(b *testing.B) { benchGrant(b, false) }
func BenchmarkGrantExpiry(b *testing.B)   { benchGrant(b, true) }

func benchGrant(b *testing.B, expiry bool) {
	needRoot(b, "sudo", "visudo", "cvtsudoers")
	dir := sudoersFolder(b)
	e, _ := privEnv(b, nil)
	e.settingsDoc(`{"enforcement": {"sudoersDir": "` + dir + `"}}`)
	e.start()
	e.waitQuiet()
	u := testUser(b)
	w, err := fsnotify.NewBufferedWatcher(1024)
	must(b, err)
	defer w.Close()
	must(b, w.Add(dir))
	await := func(path string, op fsnotify.Op) {
		for {
			select {
			case ev := <-w.Events:
				if ev.Name == path && ev.Has(op) {
					return
				}
			case err := <-w.Errors:
				b.Fatal(err)
			case <-time.After(10 * time.Second):
				b.Fatalf("%s: no %v", path, op)
			}
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		life := time.Hour
		if expiry {
			life = 300 * time.Millisecond
		}
		g := elevateGrant(b, u, "/usr/bin/id", life)
		g.ID = rnd(9)
		path := filepath.Join(dir, sudoersPrefix+g.ID)
		start := time.Now()
		e.putGrant(g)
		await(path, fsnotify.Create) // the rename into place
		if !expiry {
			lat = append(lat, time.Since(start))
			must(b, e.store.Delete(state.Grants, g.ID))
			await(path, fsnotify.Remove)
			continue
		}
		await(path, fsnotify.Remove)
		lat = append(lat, time.Since(g.ExpiresAt))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkGroupCorrected: gpasswd -a of a user into an enforced admin
// group has returned -> the user out of /etc/group again (fsnotify on
// /etc, gpasswd -d).
func BenchmarkGroupCorrected(b *testing.B) {
	needRoot(b, "gpasswd", "cvtsudoers")
	grp := testGroup(b)
	u := testUser(b)
	e, _ := privEnv(b, nil)
	e.apply(validated(b, leastPrivilegeJSON("enforce", grp, "root"))...)
	e.start()
	e.waitQuiet()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		if out, err := exec.Command("gpasswd", "-a", u.Username, grp).CombinedOutput(); err != nil {
			b.Fatalf("gpasswd -a: %v: %s", err, out)
		}
		start := time.Now() // /etc/group has the user: the change is done
		for slices.Contains(members(b, grp), u.Username) {
			if time.Since(start) > 10*time.Second {
				b.Fatal("not corrected")
			}
			time.Sleep(200 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
