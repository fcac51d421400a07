package pki_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"warden/pki"
)

func TestRevokeSurvivesRestart(t *testing.T) {
	dir := certsDir(t)
	clk := newClock()
	ca := openCA(t, dir, clk)
	certPEM, _, serial, err := ca.Issue(pki.RolePlugin, "heartbeat", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// openssl prints serials in upper case with colons; both forms work.
	if err := ca.Revoke(strings.ToUpper(serial)); err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(serial); err != nil {
		t.Fatalf("second Revoke: %v", err)
	}
	if got := mode(t, filepath.Join(dir, pki.RevokedFile)); got != 0o600 {
		t.Errorf("%s mode %04o, want 0600", pki.RevokedFile, got)
	}
	reopened := openCA(t, dir, clk)
	if _, err := reopened.IdentifyCertificate(parseCert(t, certPEM)); !errors.Is(err, pki.ErrRevoked) {
		t.Errorf("after restart: %v, want ErrRevoked", err)
	}
	if got := reopened.Revoked(); len(got) != 1 || got[0].Serial != serial {
		t.Errorf("Revoked() = %+v, want one entry for %s", got, serial)
	}
}

func TestRevokePrunesExpired(t *testing.T) {
	dir := certsDir(t)
	clk := newClock()
	ca := openCA(t, dir, clk)
	_, _, short, err := ca.Issue(pki.RolePlugin, "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	_, _, long, err := ca.Issue(pki.RolePlugin, "b", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{short, long} {
		if err := ca.Revoke(s); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(2 * time.Hour)
	_, _, third, err := ca.Issue(pki.RolePlugin, "c", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(third); err != nil {
		t.Fatal(err)
	}
	if got, want := fileSerials(t, dir), []string{long, third}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("revoked.json serials %v, want %v (the expired one pruned)", got, want)
	}
}

// An entry an operator adds to the file is picked up by ReloadRevocations
// and kept when the agent writes the file next.
func TestRevocationAddedByOperator(t *testing.T) {
	dir := certsDir(t)
	clk := newClock()
	ca := openCA(t, dir, clk)
	certPEM, _, serial, err := ca.Issue(pki.RolePlugin, "a", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	entry := `{"revoked": [{"serial": "` + serial + `"}]}`
	if err := os.WriteFile(filepath.Join(dir, pki.RevokedFile), []byte(entry), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ca.ReloadRevocations(); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.IdentifyCertificate(parseCert(t, certPEM)); !errors.Is(err, pki.ErrRevoked) {
		t.Errorf("after reload: %v, want ErrRevoked", err)
	}
	_, _, other, err := ca.Issue(pki.RolePlugin, "b", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Revoke(other); err != nil {
		t.Fatal(err)
	}
	if got := fileSerials(t, dir); len(got) != 2 {
		t.Errorf("revoked.json serials %v, want the operator's and the agent's", got)
	}
}

func TestRevokeRefusesBadSerial(t *testing.T) {
	ca := openCA(t, certsDir(t), newClock())
	for _, s := range []string{"", "xyz", "-1", "0"} {
		if err := ca.Revoke(s); err == nil {
			t.Errorf("Revoke(%q) succeeded, want error", s)
		}
	}
}

func fileSerials(t *testing.T, dir string) []string {
	t.Helper()
	var f struct {
		Revoked []pki.Revocation `json:"revoked"`
	}
	if err := json.Unmarshal(readFile(t, filepath.Join(dir, pki.RevokedFile)), &f); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range f.Revoked {
		out = append(out, r.Serial)
	}
	return out
}
