package source

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"testing"

	"warden/audit"
	"warden/schema"
)

// A new generation answers unchanged documents from the validation cache,
// by the SHA-256 of the bytes in the archive. An attacker who can write
// the inbox but not sign must not get bytes past the manifest that way:
// the manifest says a file is unchanged (its hash is the applied
// document's), the archive carries other bytes that were validated before
// (a document of an earlier generation, in the cache), or the other way
// round. Both are refused for the file's hash, audited, and the applied
// state stays.
func TestUnchangedInManifestOtherBytesRefused(t *testing.T) {
	key := newKey(t)
	allow := strings.Replace(sampleDocs["policies/deny-netcat.json"], `"controls": ["deny"]`, `"controls": ["allow"]`, 1)
	cases := []struct {
		name              string
		applied, manifest string // deny-netcat in the applied generation, and as the manifest lists it
		archive           string // the bytes the archive carries for it
	}{
		{"manifest unchanged, archive other validated bytes", sampleDocs["policies/deny-netcat.json"], sampleDocs["policies/deny-netcat.json"], allow},
		{"manifest changed, archive the applied bytes", sampleDocs["policies/deny-netcat.json"], allow, sampleDocs["policies/deny-netcat.json"]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAgent(t, key)
			a.p.Now = fixedNow
			// Both versions validated (and cached) by earlier generations.
			for v, doc := range []string{allow, tc.applied} {
				files := docFiles(map[string]string{"policies/deny-netcat.json": doc})
				if _, err := a.applyFile(t, writeBundle(t, targz(t, craft(t, key, schema.Manifest{Version: int64(v + 1)}, files)))); err != nil {
					t.Fatalf("apply v%d: %v", v+1, err)
				}
			}
			before := a.store.Current()
			es := craft(t, key, schema.Manifest{Version: 9}, docFiles(map[string]string{"policies/deny-netcat.json": tc.manifest}))
			for i, e := range es {
				if e.hdr.Name == "policies/deny-netcat.json" {
					es[i] = reg(e.hdr.Name, []byte(tc.archive))
				}
			}
			_, err := a.applyFile(t, writeBundle(t, targz(t, es)))
			if !errors.Is(err, ErrHashMismatch) || !strings.Contains(Reason(err), "policies/deny-netcat.json") {
				t.Fatalf("got %v, want %v naming policies/deny-netcat.json", err, ErrHashMismatch)
			}
			cur := a.store.Current()
			if cur.Meta != before.Meta || !bytes.Equal(cur.Get(schema.KindPolicy, "deny-netcat").Raw, []byte(tc.applied)) {
				t.Errorf("applied state changed: %+v", cur.Meta)
			}
			if evs := a.events(t, audit.BundleRejected); len(evs) != 1 {
				t.Errorf("%d BUNDLE_REJECTED events, want 1", len(evs))
			}
		})
	}
}

// Validating a bundle's documents on all cores reports what validating
// them one by one does: the same documents, and every issue of every
// invalid one, in file order (a batch large enough to relax the
// collector, with invalid documents spread through it).
func TestParallelValidationSameAsSerial(t *testing.T) {
	files := map[string][]byte{}
	for i := range 600 {
		doc := fmt.Sprintf(`{"kind": "Policy", "id": "p-%03d", "spec": {"name": "p %d", "type": "PrivilegeElevation",
 "status": "enforce", "priority": %d, "controls": ["allow"], "durationSeconds": 900, "filters": {"users": ["u%d"]}}}`, i, i, i, i)
		switch i % 7 {
		case 1:
			doc = strings.Replace(doc, `"durationSeconds": 900`, `"durationSeconds": 30`, 1)
		case 3:
			doc = strings.Replace(doc, `"status": "enforce"`, `"status": "maybe", "color": "red"`, 1)
		case 5:
			doc = strings.Replace(doc, `"controls": ["allow"]`, `"controls": []`, 1)
		}
		files[fmt.Sprintf("policies/p-%03d.json", i)] = []byte(doc)
	}
	b := &Bundle{Files: files}
	paths := b.Paths()
	sums := map[string][32]byte{}
	for p, d := range files {
		sums[p] = sha256.Sum256(d)
	}
	// On all cores first, cold (these bytes are new to the cache), then
	// again warm; one by one in between. (Issues are never cached, so the
	// serial run finds them itself.)
	cold, coldErrs := validateDocuments(t.Context(), b, paths, sums)
	var serial schema.Errors
	valid := 0
	for _, p := range paths {
		_, err := schema.Validate(p, files[p])
		var se schema.Errors
		if errors.As(err, &se) {
			serial = append(serial, se...)
		} else if err == nil {
			valid++
		}
	}
	if len(serial) == 0 || valid == 0 {
		t.Fatal("the batch needs valid and invalid documents")
	}
	warm, warmErrs := validateDocuments(t.Context(), b, paths, sums)
	for name, got := range map[string]schema.Errors{"cold": coldErrs, "warm": warmErrs} {
		if got.Error() != serial.Error() {
			t.Errorf("%s, on all cores:\n%s\none by one:\n%s", name, got.Error(), serial.Error())
		}
	}
	if cold != nil || warm != nil {
		t.Errorf("documents returned beside errors")
	}
	// Without the invalid ones, the same documents in file order.
	for p := range files {
		if strings.Contains(serial.Error(), p+":") {
			delete(files, p)
		}
	}
	paths = b.Paths()
	docs, errs := validateDocuments(t.Context(), b, paths, sums)
	if errs != nil || len(docs) != valid {
		t.Fatalf("%d documents, %v; want %d", len(docs), errs, valid)
	}
	for i, d := range docs {
		if want := "policies/" + d.ID + ".json"; paths[i] != want {
			t.Fatalf("document %d is %s, want the one of %s", i, d.ID, paths[i])
		}
	}
}

// inPlace answers as placeOf does, for documents in and out of place.
func TestInPlaceAgreesWithPlaceOf(t *testing.T) {
	docs := []*schema.Document{{Kind: schema.KindPolicy, ID: "a"}, {Kind: schema.KindApprover, ID: "it-oncall"},
		{Kind: schema.KindSettings, ID: "agent"}, {Kind: schema.KindSettings, ID: "other"}, {Kind: schema.KindJob, ID: "x.y"},
		{Kind: schema.KindPlugin, ID: ""}, {Kind: schema.KindPolicy, ID: "../a"}, {Kind: schema.KindPolicy, ID: ".a"}}
	paths := []string{"policies/a.json", "approvers/it-oncall.json", "settings.json", "jobs/x.y.json", "plugins/.json",
		"policies/../a.json", "policies/.a.json", "policies/a.json.json", "policiesX/a.json", "policies/a", "a.json", "jobs/a.json"}
	for _, d := range docs {
		for _, p := range paths {
			kind, id, err := placeOf(p)
			want := err == nil && kind == d.Kind && id == d.ID
			if got := inPlace(p, d); got != want {
				t.Errorf("inPlace(%q, %s/%s) = %v, placeOf says %v", p, d.Kind, d.ID, got, want)
			}
		}
	}
}
