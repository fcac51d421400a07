package reconcile

import (
	"os"
	"sync"
	"testing"
	"time"

	"warden/audit"
	"warden/pki"
	"warden/schema"
	"warden/state"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func TestCertificateRotation(t *testing.T) {
	clk := &clock{t: time.Now()}
	e := newEnv(t, func(o *Options) { o.Now = clk.Now })
	ca, err := pki.Open(e.path("certs"), clk.Now)
	must(t, err)
	sc := pki.NewServerCert(ca, pki.ServerCertConfig{TTL: 60 * 24 * time.Hour})
	_, err = e.m.AddCertificates(sc)
	must(t, err)
	e.start()
	e.waitFor("first certificate", func() bool { return !sc.NotAfter().IsZero() && len(e.events(audit.CertRotated)) == 1 })
	first := sc.Current().Serial
	e.waitQuiet()

	// Nothing to do while more than rotateBeforeDays (10) remain.
	clk.Add(49 * 24 * time.Hour)
	e.m.Resync()
	e.waitQuiet()
	if sc.Current().Serial != first {
		t.Fatal("rotated with 11 days left")
	}
	// Within the window: rotated without a restart, audited.
	clk.Add(2 * 24 * time.Hour)
	e.m.Resync()
	e.waitFor("rotation", func() bool { return sc.Current().Serial != first && len(e.events(audit.CertRotated)) == 2 })
	ev := e.events(audit.CertRotated)[1]
	if ev.Details["previousSerial"] != first || ev.Details["serial"] != sc.Current().Serial {
		t.Errorf("CERT_ROTATED details: %+v", ev.Details)
	}

	// A larger window from Settings takes effect on apply.
	second := sc.Current().Serial
	clk.Add(35 * 24 * time.Hour) // 25 days left
	e.apply(validated(t, []byte(`{"kind": "Settings", "id": "agent", "spec": {
  "allowedHosts": ["localhost", "127.0.0.1"], "certificate": {"rotateBeforeDays": 28}}}`))...)
	e.waitFor("rotation after settings change", func() bool { return sc.Current().Serial != second })
	e.waitQuiet()
	if got := e.m.Settings().Certificate; got != (schema.Certificate{RotateBeforeDays: 28}) {
		t.Errorf("settings: got %+v", got)
	}
}

func TestCertificateFileTampered(t *testing.T) {
	e := newEnv(t, nil)
	ca, err := pki.Open(e.path("certs"), nil)
	must(t, err)
	sc := pki.NewServerCert(ca, pki.ServerCertConfig{})
	if _, err := sc.Rotate(); err != nil { // the agent rotates before serving
		t.Fatal(err)
	}
	_, err = e.m.AddCertificates(sc)
	must(t, err)
	e.start()
	e.waitQuiet()
	served := sc.Current().Serial
	if n := len(e.events(audit.CertRotated)); n != 0 {
		t.Fatalf("rotated a fresh certificate at start: %d", n)
	}
	must(t, os.WriteFile(e.path("certs/server.pem"), []byte("not a certificate"), 0o600))
	e.waitFor("drift corrected", func() bool { return e.hasDrift("Certificate", "server", "server.pem", state.DriftCorrected) })
	if sc.Current().Serial == served {
		t.Error("not rotated")
	}
}
