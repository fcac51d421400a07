package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"warden/schema"
)

var demoDocs = []string{
	`{"kind": "Policy", "id": "deny-netcat", "spec": {
  "name": "Block netcat", "type": "PrivilegeElevation", "status": "enforce",
  "priority": 100, "controls": ["deny"],
  "filters": {"users": ["*"], "machines": ["*"], "applications": [{"path": "/usr/bin/nc*"}]}}}`,
	`{"kind": "Approver", "id": "it-oncall", "spec": {"name": "IT on call", "users": ["alice", "bob"], "policies": ["*"]}}`,
	`{"kind": "Settings", "id": "agent", "spec": {"allowedHosts": ["localhost", "127.0.0.1"]}}`,
	`{"kind": "Job", "id": "inventory", "spec": {"trigger": {"schedule": "*/5 * * * *"},
  "tasks": [{"command": "/usr/bin/uname", "args": ["-a"], "timeoutSeconds": 30}]}}`,
}

func demo(t *testing.T) []*schema.Document {
	var out []*schema.Document
	for _, d := range demoDocs {
		out = append(out, mustValidate(t, d))
	}
	return out
}

func TestApplyAndRead(t *testing.T) {
	dir := keeperDir(t)
	s := openT(t, dir, Options{})
	if sn := s.Current(); sn.Meta.Generation != 0 || len(sn.Docs) != 0 || sn.Settings().AllowedHosts[0] != "localhost" {
		t.Fatalf("empty store: %+v", sn.Meta)
	}
	m, err := s.ApplyGeneration(Apply{BundleVersion: 7, Source: "bundle:demo.tar.gz", Docs: demo(t)})
	if err != nil {
		t.Fatal(err)
	}
	if m.Generation != 1 || m.BundleVersion != 7 || m.Documents != 4 || m.Source != "bundle:demo.tar.gz" {
		t.Errorf("meta = %+v", m)
	}
	check := func(sn *Snapshot, where string) {
		t.Helper()
		if sn.Meta.Generation != 1 || sn.Meta.BundleVersion != 7 || len(sn.Docs) != 4 {
			t.Fatalf("%s: meta %+v, %d docs", where, sn.Meta, len(sn.Docs))
		}
		var order []string
		for _, d := range sn.Docs {
			order = append(order, d.Key())
		}
		want := "[Settings/agent Policy/deny-netcat Approver/it-oncall Job/inventory]"
		if fmt.Sprint(order) != want {
			t.Errorf("%s: order %v, want %s", where, order, want)
		}
		if p := sn.Get(schema.KindPolicy, "deny-netcat"); p == nil || p.Policy().Priority != 100 || p.Policy().Controls[0] != "deny" {
			t.Errorf("%s: deny-netcat = %+v", where, p)
		}
		if sn.Get(schema.KindPolicy, "nope") != nil {
			t.Errorf("%s: Get of a missing document returned one", where)
		}
		if j := sn.OfKind(schema.KindJob); len(j) != 1 || j[0].Job().Tasks[0].Command != "/usr/bin/uname" {
			t.Errorf("%s: jobs = %v", where, j)
		}
		if !bytes.Equal(sn.Get(schema.KindApprover, "it-oncall").Raw, []byte(demoDocs[1])) {
			t.Errorf("%s: Raw not kept byte for byte", where)
		}
		if sn.Get(schema.KindApprover, "it-oncall").Hash != sha256.Sum256([]byte(demoDocs[1])) {
			t.Errorf("%s: Hash is not the SHA-256 of the document as received", where)
		}
	}
	check(s.Current(), "Current")
	g, err := s.Generation(1)
	if err != nil {
		t.Fatal(err)
	}
	check(g, "Generation(1)")
	if _, err := s.Generation(2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Generation(2) err = %v, want ErrNotFound", err)
	}
	s.Close()
	s2 := openT(t, dir, Options{})
	check(s2.Current(), "after reopen")
}

func TestApplyRefusals(t *testing.T) {
	s := openT(t, keeperDir(t), Options{})
	d := demo(t)
	if _, err := s.ApplyGeneration(Apply{Docs: append(d, d[0])}); err == nil {
		t.Error("a generation holding a document twice was applied")
	}
	if _, err := s.ApplyGeneration(Apply{Docs: d, BundleVersion: 5}); err != nil {
		t.Fatal(err)
	}
	errOld := errors.New("version not above the applied one")
	_, err := s.ApplyGeneration(Apply{Docs: d[:1], BundleVersion: 4, Check: func(cur Meta) error {
		if cur.BundleVersion >= 4 {
			return errOld
		}
		return nil
	}})
	if !errors.Is(err, errOld) {
		t.Errorf("Check error = %v, want it returned", err)
	}
	if sn := s.Current(); sn.Meta.Generation != 1 || len(sn.Docs) != 4 {
		t.Errorf("a refused apply changed the state: %+v", sn.Meta)
	}
	if gens, _ := s.Generations(); len(gens) != 1 {
		t.Errorf("a refused apply left %d generations", len(gens))
	}
	// An empty generation is a valid desired state: nothing.
	if m, err := s.ApplyGeneration(Apply{Source: "local"}); err != nil || m.Documents != 0 || len(s.Current().Docs) != 0 {
		t.Errorf("empty apply: %+v %v", m, err)
	}
}

func TestGenerationsKept(t *testing.T) {
	for _, keep := range []int{0, 3} { // 0 means the default, 10
		t.Run(fmt.Sprint("keep", keep), func(t *testing.T) {
			dir := keeperDir(t)
			s := openT(t, dir, Options{KeepGenerations: keep})
			for g := 1; g <= 15; g++ {
				if _, err := s.ApplyGeneration(Apply{BundleVersion: int64(g), Docs: generationDocs(t, g, fmt.Sprint(g))}); err != nil {
					t.Fatal(err)
				}
			}
			want := keep
			if want == 0 {
				want = 10
			}
			gens, err := s.Generations()
			if err != nil {
				t.Fatal(err)
			}
			if len(gens) != want {
				t.Fatalf("kept %d generations, want %d", len(gens), want)
			}
			for i, m := range gens {
				g := uint64(15 - i)
				if m.Generation != g || m.Documents != int(g) || m.BundleVersion != int64(g) {
					t.Errorf("Generations()[%d] = %+v, want generation %d (newest first)", i, m, g)
				}
				sn, err := s.Generation(g)
				if err != nil {
					t.Fatal(err)
				}
				if len(sn.Docs) != int(g) || tagOf(sn.Docs[0]) != fmt.Sprint(g) {
					t.Errorf("generation %d holds %d docs tagged %s", g, len(sn.Docs), tagOf(sn.Docs[0]))
				}
			}
			if _, err := s.Generation(uint64(15 - want)); !errors.Is(err, ErrNotFound) {
				t.Errorf("generation %d was not pruned: %v", 15-want, err)
			}
		})
	}
}

func TestSubscribe(t *testing.T) {
	s := openT(t, keeperDir(t), Options{})
	ch, cancel := s.Subscribe()
	ch2, cancel2 := s.Subscribe()
	defer cancel2()
	if _, err := s.ApplyGeneration(Apply{Docs: demo(t)}); err != nil {
		t.Fatal(err)
	}
	// The notification comes after the commit: the new generation is what
	// Current and the database hold.
	g := <-ch
	if g != 1 || s.Current().Meta.Generation != 1 {
		t.Fatalf("notified %d, Current %d", g, s.Current().Meta.Generation)
	}
	if sn, err := s.Generation(g); err != nil || len(sn.Docs) != 4 {
		t.Fatalf("notified generation not readable: %v", err)
	}
	// A slow subscriber sees the newest generation, not a backlog.
	for i := 0; i < 3; i++ {
		if _, err := s.ApplyGeneration(Apply{Docs: demo(t)}); err != nil {
			t.Fatal(err)
		}
	}
	if g := <-ch; g != 4 {
		t.Errorf("after three applies a slow subscriber got %d, want 4", g)
	}
	select {
	case g := <-ch:
		t.Errorf("backlog: got %d after the newest", g)
	default:
	}
	cancel()
	if _, ok := <-ch; ok {
		t.Error("channel open after cancel")
	}
	cancel() // twice is harmless
	if g := <-ch2; g != 4 {
		t.Errorf("second subscriber got %d, want 4", g)
	}
	// A refused apply notifies nobody.
	s.ApplyGeneration(Apply{Check: func(Meta) error { return errors.New("no") }})
	select {
	case g := <-ch2:
		t.Errorf("refused apply notified %d", g)
	default:
	}
	s.Close()
	if _, ok := <-ch2; ok {
		t.Error("channel open after Close")
	}
	ch3, _ := s.Subscribe()
	if _, ok := <-ch3; ok {
		t.Error("Subscribe after Close returned an open channel")
	}
}

// TestSnapshotsConsistent: readers running during applies always see one
// whole generation.
func TestSnapshotsConsistent(t *testing.T) {
	s := openT(t, keeperDir(t), Options{NoSync: true})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 8)
	for r := 0; r < 4; r++ {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				sn := s.Current()
				for _, d := range sn.Docs {
					if tagOf(d) != fmt.Sprint(sn.Meta.Generation) {
						errs <- fmt.Errorf("generation %d holds %s tagged %s", sn.Meta.Generation, d.ID, tagOf(d))
						return
					}
				}
			}
		})
	}
	for g := 1; g <= 30; g++ {
		if _, err := s.ApplyGeneration(Apply{Docs: generationDocs(t, 50+g, fmt.Sprint(g))}); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRecords(t *testing.T) {
	dir := keeperDir(t)
	s := openT(t, dir, Options{})
	type grant struct {
		User    string    `json:"user"`
		Expires time.Time `json:"expires"`
	}
	g1 := grant{"carol", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	if err := s.Put(Grants, "g-1", g1); err != nil {
		t.Fatal(err)
	}
	if err := s.PutMany(Grants, map[string]any{"g-2": grant{User: "dave"}, "g-3": grant{User: "erin"}}); err != nil {
		t.Fatal(err)
	}
	var got grant
	if ok, err := s.Get(Grants, "g-1", &got); !ok || err != nil || got != g1 {
		t.Errorf("Get g-1 = %v %v %+v", ok, err, got)
	}
	if ok, err := s.Get(Grants, "missing", &got); ok || err != nil {
		t.Errorf("Get missing = %v %v", ok, err)
	}
	if ok, _ := s.Get(Status, "g-1", &got); ok {
		t.Error("a key of one bucket is visible in another")
	}
	list := func() map[string]string {
		out := map[string]string{}
		if err := s.List(Grants, func(k string, v json.RawMessage) error {
			var g grant
			if err := json.Unmarshal(v, &g); err != nil {
				return err
			}
			out[k] = g.User
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := fmt.Sprint(list()); got != "map[g-1:carol g-2:dave g-3:erin]" {
		t.Errorf("List = %s", got)
	}
	if err := s.Put(Grants, "g-2", grant{User: "frank"}); err != nil { // update
		t.Fatal(err)
	}
	if err := s.Delete(Grants, "g-1", "never-existed"); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(list()); got != "map[g-2:frank g-3:erin]" {
		t.Errorf("List after update and delete = %s", got)
	}
	stop := errors.New("stop")
	if err := s.List(Grants, func(string, json.RawMessage) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("List did not return fn's error: %v", err)
	}
	if err := s.Put(Grants, "bad", func() {}); err == nil {
		t.Error("Put of a value JSON cannot encode succeeded")
	}
	s.Close()
	s = openT(t, dir, Options{})
	if ok, _ := s.Get(Grants, "g-3", &got); !ok || got.User != "erin" {
		t.Errorf("after reopen g-3 = %+v", got)
	}
}

func TestDrift(t *testing.T) {
	s := openT(t, keeperDir(t), Options{})
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	fixed := t0.Add(time.Minute)
	recs := []DriftRecord{
		{ID: "d1", Kind: "File", Name: "Plugins/heartbeat.json", Field: "mode", Desired: "0600", Actual: "0644", State: DriftCorrected, Action: "chmod", DetectedAt: t0, CorrectedAt: &fixed},
		{ID: "d2", Kind: "Plugin", Name: "heartbeat", Field: "running", Desired: "true", Actual: "false", State: DriftOpen, DetectedAt: t0.Add(time.Hour)},
		{ID: "d3", Kind: "File", Name: "appsettings.json", Field: "content", State: DriftUnresolved, Error: "read-only fs", DetectedAt: t0.Add(2 * time.Hour)},
		{ID: "d4", Kind: "Plugin", Name: "old", Field: "running", State: DriftOpen, DetectedAt: t0.Add(-time.Hour)},
	}
	for _, r := range recs {
		if err := s.PutDrift(r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.DriftRecords()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range got {
		ids = append(ids, r.ID)
	}
	if fmt.Sprint(ids) != "[d3 d2 d1 d4]" {
		t.Errorf("DriftRecords order %v, want newest first", ids)
	}
	if got[2].CorrectedAt == nil || !got[2].CorrectedAt.Equal(fixed) || got[2].Action != "chmod" {
		t.Errorf("d1 read back as %+v", got[2])
	}
	// The API shape: "id" is the object, "recordId" the record.
	j, _ := json.Marshal(recs[1])
	var wire map[string]any
	json.Unmarshal(j, &wire)
	if wire["id"] != "heartbeat" || wire["recordId"] != "d2" || wire["state"] != "open" || wire["kind"] != "Plugin" {
		t.Errorf("wire form %s", j)
	}
	var back DriftRecord
	if err := json.Unmarshal(j, &back); err != nil || back.ID != "d2" || back.Name != "heartbeat" {
		t.Errorf("round trip: %+v %v", back, err)
	}
	// Pruning keeps open records however old.
	n, err := s.PruneDrift(t0.Add(90 * time.Minute))
	if err != nil || n != 1 {
		t.Errorf("PruneDrift = %d, %v, want 1 (d1)", n, err)
	}
	got, _ = s.DriftRecords()
	if len(got) != 3 {
		t.Errorf("after prune %d records, want 3", len(got))
	}
}

func TestAudit(t *testing.T) {
	dir := keeperDir(t)
	s := openT(t, dir, Options{})
	if _, ok, err := s.LastAudit(); ok || err != nil {
		t.Errorf("LastAudit on empty = %v %v", ok, err)
	}
	var batch []AuditEntry
	for i := uint64(1); i <= 100; i++ {
		batch = append(batch, AuditEntry{Seq: i, Data: []byte(fmt.Sprintf(`{"seq":%d}`, i))})
	}
	if err := s.AppendAudit(batch[:60]); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit(batch[60:]); err != nil {
		t.Fatal(err)
	}
	// A batch whose sequence does not go up is refused whole.
	if err := s.AppendAudit([]AuditEntry{{Seq: 101, Data: []byte("x")}, {Seq: 50, Data: []byte("y")}}); err == nil {
		t.Error("a sequence going back was appended")
	}
	if e, ok, _ := s.LastAudit(); !ok || e.Seq != 100 || string(e.Data) != `{"seq":100}` {
		t.Errorf("LastAudit = %d %s, want 100 (the refused batch left nothing)", e.Seq, e.Data)
	}
	scan := func(from uint64, reverse bool, limit int) []uint64 {
		var out []uint64
		if err := s.AuditScan(from, reverse, func(e AuditEntry) bool {
			if string(e.Data) != fmt.Sprintf(`{"seq":%d}`, e.Seq) {
				t.Fatalf("entry %d holds %s", e.Seq, e.Data)
			}
			out = append(out, e.Seq)
			return len(out) < limit
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := scan(95, false, 100); fmt.Sprint(got) != "[95 96 97 98 99 100]" {
		t.Errorf("scan from 95 = %v", got)
	}
	if got := scan(0, false, 3); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("scan limited = %v", got)
	}
	if got := scan(97, true, 100); fmt.Sprint(got) != "[100 99 98 97]" {
		t.Errorf("reverse scan to 97 = %v", got)
	}
	anchor := []byte("hash-of-event-40")
	n, err := s.PruneAudit(41, anchor)
	if err != nil || n != 40 {
		t.Fatalf("PruneAudit = %d %v, want 40", n, err)
	}
	if got := scan(0, false, 1000); len(got) != 60 || got[0] != 41 {
		t.Errorf("after prune: %d entries from %d", len(got), got[0])
	}
	s.Close()
	s = openT(t, dir, Options{})
	if a, err := s.AuditAnchor(); err != nil || string(a) != string(anchor) {
		t.Errorf("anchor after reopen = %q %v", a, err)
	}
	if e, ok, _ := s.LastAudit(); !ok || e.Seq != 100 {
		t.Errorf("LastAudit after reopen = %d", e.Seq)
	}
	if err := s.AppendAudit([]AuditEntry{{Seq: 100, Data: []byte("dup")}}); err == nil {
		t.Error("a used sequence number was appended after reopen")
	}
}

func TestKeyMissingOrWrong(t *testing.T) {
	dir := keeperDir(t)
	s := openT(t, dir, Options{})
	if _, err := s.ApplyGeneration(Apply{Docs: demo(t)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	keyPath := filepath.Join(dir, KeyFile)
	fi, err := os.Stat(keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 32 {
		t.Fatalf("data key: %v, mode %v, %d bytes; want 0600, 32 bytes", err, fi.Mode(), fi.Size())
	}
	key, _ := os.ReadFile(keyPath)

	tests := []struct {
		name string
		key  []byte // nil: no key file
		want error
	}{
		{"missing", nil, ErrKeyMissing},
		{"other key", bytes.Repeat([]byte{7}, 32), ErrWrongKey},
		{"one bit flipped", append([]byte{key[0] ^ 1}, key[1:]...), ErrWrongKey},
		{"short", key[:16], ErrWrongKey},
		{"long", append(append([]byte{}, key...), 0), ErrWrongKey},
		{"empty", []byte{}, ErrWrongKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(keyPath)
			if tc.key != nil {
				if err := os.WriteFile(keyPath, tc.key, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(dir, Options{})
			if err == nil {
				s.Close()
				t.Fatalf("Open succeeded with a %s key", tc.name)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Open err = %v, want %v", err, tc.want)
			}
			if tc.key == nil {
				if _, err := os.Stat(keyPath); err == nil {
					t.Error("Open made up a new key for an existing database")
				}
			}
		})
	}
	// With the right key back, everything is there.
	os.WriteFile(keyPath, key, 0o600)
	s = openT(t, dir, Options{})
	if s.Current().Meta.Generation != 1 || len(s.Current().Docs) != 4 {
		t.Errorf("after restoring the key: %+v", s.Current().Meta)
	}
}

func TestSecondOpenLocked(t *testing.T) {
	dir := keeperDir(t)
	s := openT(t, dir, Options{})
	_ = s
	s2, err := Open(dir, Options{})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of an open store succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open err = %v, want ErrLocked", err)
	}
	s.Close()
	s3, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s3.Close()
}

// TestEncryptionAtRest: neither document contents nor ids nor record keys
// appear in warden.db's bytes.
func TestEncryptionAtRest(t *testing.T) {
	const marker = "ZEBRA-7f3a-MARKER-91"
	dir := keeperDir(t)
	s := openT(t, dir, Options{})
	ids := []string{"deny-netcat", "it-oncall", "inventory", "marker-policy-id"}
	docs := demo(t)
	docs = append(docs, mustValidate(t, policyJSON("marker-policy-id", marker)))
	for i := 0; i < 3; i++ { // several generations, so old pages hold them too
		if _, err := s.ApplyGeneration(Apply{Source: "bundle:" + marker, Docs: docs}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(Secrets, "mfa-"+marker, map[string]string{"secret": marker}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDrift(DriftRecord{ID: "drift-" + marker, Kind: "Plugin", Name: "deny-netcat", Actual: marker, State: DriftOpen}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendAudit([]AuditEntry{{Seq: 1, Data: []byte(`{"user_info":"` + marker + `","target_info":"deny-netcat"}`)}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	raw, err := os.ReadFile(filepath.Join(dir, DBFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, needle := range append(ids, marker, "Block netcat", "/usr/bin/nc", "PrivilegeElevation", "alice") {
		if bytes.Contains(raw, []byte(needle)) {
			t.Errorf("warden.db contains %q in the clear", needle)
		}
	}
	// The store reads back what it wrote.
	s = openT(t, dir, Options{})
	if d := s.Current().Get(schema.KindPolicy, "marker-policy-id"); d == nil || tagOf(d) != marker {
		t.Errorf("marker policy not read back: %+v", d)
	}
}

// TestTamperedValue: a value changed on disk is reported, never decoded
// into garbage.
func TestTamperedValue(t *testing.T) {
	dir := keeperDir(t)
	s := openT(t, dir, Options{})
	if err := s.Put(Status, "agent", map[string]string{"state": "ok"}); err != nil {
		t.Fatal(err)
	}
	// Move another bucket's sealed value under this key: authentication
	// data binds a value to its bucket and key.
	sealed := s.seal.seal([]byte(`{"k":"agent","v":{"state":"evil"}}`), ad([]byte(Drift), s.seal.keyName(string(Status), "agent")))
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(Status)).Put(s.seal.keyName(string(Status), "agent"), sealed)
	}); err != nil {
		t.Fatal(err)
	}
	var v map[string]string
	if _, err := s.Get(Status, "agent", &v); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Get of a moved value: %v %v, want ErrCorrupt", v, err)
	}
}
