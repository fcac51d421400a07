package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMetricsAndMonitorIdentity scrapes a real agent: the event counters
// exist at zero before any event, follow the audit log, the build info is
// there, and the monitor certificate reads /metrics and /health only.
func TestMetricsAndMonitorIdentity(t *testing.T) {
	root := t.TempDir()
	_, info := startAgent(t, root)
	admin := adminClient(t, root)
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, b := get(t, admin, "https://"+info.API+"/metrics", "Host", "localhost")
		if code != 200 {
			t.Fatalf("/metrics as admin: %d %s", code, b)
		}
		body = b
		if strings.Contains(body, `warden_audit_events_total{type="AGENT_STARTED"} 1`) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{
		`warden_audit_events_total{type="AGENT_STARTED"} 1`,
		`warden_bundles_rejected_total{reason="signature"} 0`,
		`warden_decisions_total{effect="deny",mode="enforce"} 0`,
		`warden_elevations_total{result="granted"} 0`,
		`warden_refused_callers_total{kind="authorization"} 0`,
		`warden_job_runs_total{result="failed"} 0`,
		`warden_plugin_restarts_total 0`,
		`warden_grants_in_force 0`,
		`warden_build_info{commit=`,
		`warden_certificate_expiry_timestamp_seconds{certificate="server"} `,
		`warden_audit_sequence `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if strings.Contains(body, `warden_certificate_expiry_timestamp_seconds{certificate="monitor"} 0`) {
		t.Error("the monitor certificate's expiry is unreadable")
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}

	certs := filepath.Join(root, "certs")
	for _, f := range []string{"monitor.pem", "monitor-key.pem"} {
		if st, err := os.Stat(filepath.Join(certs, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("certs/%s: %v; want it, mode 0600", f, err)
		}
	}
	mon := tlsClient(t, root, pair(t, must(os.ReadFile(filepath.Join(certs, "monitor.pem"))), must(os.ReadFile(filepath.Join(certs, "monitor-key.pem")))))
	for path, want := range map[string]int{"/metrics": 200, "/health": 200, "/api/v1/status": 403, "/api/v1/audit": 403, "/api/v1/desired": 403} {
		if code, b := get(t, mon, "https://"+info.API+path, "Host", "localhost"); code != want {
			t.Errorf("monitor GET %s = %d %s; want %d", path, code, b, want)
		}
	}
	// The refusals were audited and counted as refused callers.
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, body = get(t, admin, "https://"+info.API+"/metrics", "Host", "localhost")
		if strings.Contains(body, `warden_refused_callers_total{kind="authorization"} 3`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refused callers not counted:\n%s", grep(body, "warden_refused"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
