package agent

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"warden/audit"
	"warden/buildinfo"
	"warden/pki"
	"warden/state"
)

// startMetrics registers the agent-wide metrics: event counters fed by an
// audit subscription (so metrics and the audit log agree), build info,
// certificate expiry and grants in force.
func (a *agent) startMetrics(ctx context.Context, reg prometheus.Registerer) error {
	em, err := audit.NewEventMetrics(reg)
	if err != nil {
		return err
	}
	events, cancel := a.audit.Subscribe()
	a.goRun(ctx, "metrics", func(ctx context.Context) error {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return nil
			case e, ok := <-events:
				if !ok {
					return nil
				}
				em.Observe(e)
			}
		}
	})
	bi := buildinfo.Get()
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "warden_build_info",
		Help: "Always 1; the labels say which build runs."}, []string{"version", "commit", "goversion"})
	build.WithLabelValues(bi.Version, bi.Commit, bi.GoVersion).Set(1)
	certs := filepath.Join(a.opts.Root, "certs")
	cs := []prometheus.Collector{build,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_grants_in_force",
			Help: "Time-limited grants not yet expired."}, a.grantsInForce)}
	for _, c := range []struct{ name, file string }{{"server", pki.ServerCertFile}, {"ca", pki.CACertFile}, {"monitor", pki.MonitorCertFile}} {
		path := filepath.Join(certs, c.file)
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_certificate_expiry_timestamp_seconds",
			Help: "When the certificate expires (Unix time); 0 when unreadable.", ConstLabels: prometheus.Labels{"certificate": c.name}},
			func() float64 { return certExpiry(path) }))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

func certExpiry(path string) float64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	blk, _ := pem.Decode(data)
	if blk == nil {
		return 0
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return 0
	}
	return float64(c.NotAfter.Unix())
}

func (a *agent) grantsInForce() float64 {
	now, n := time.Now(), 0
	a.store.List(state.Grants, func(_ string, v json.RawMessage) error {
		var g state.Grant
		if json.Unmarshal(v, &g) == nil && g.ExpiresAt.After(now) {
			n++
		}
		return nil
	})
	return float64(n)
}
