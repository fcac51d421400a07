package schema

import (
	"strings"
	"testing"
)

func TestAuditForwardSettings(t *testing.T) {
	settings := func(forward string) string {
		return `{"kind": "Settings", "id": "agent", "spec": {"audit": {"forward": ` + forward + `}}}`
	}
	tests := []struct {
		name, forward, wantErr string
	}{
		{"design example", `[{"type": "syslog", "address": "127.0.0.1:6514", "tls": true, "caFile": "/etc/warden/siem-ca.pem", "format": "json"}, {"type": "file", "path": "/var/log/warden/audit.ndjson"}]`, ""},
		{"cef with client cert", `[{"type": "syslog", "address": "siem.example:6514", "format": "cef", "certFile": "/etc/warden/c.pem", "keyFile": "/etc/warden/k.pem"}]`, ""},
		{"file rotation", `[{"type": "file", "path": "/var/log/warden/a.ndjson", "maxSizeMB": 10, "maxFiles": 3, "alertAfterSeconds": 60}]`, ""},
		{"unknown type", `[{"type": "kafka", "address": "a:1"}]`, "type"},
		{"syslog without address", `[{"type": "syslog"}]`, "address"},
		{"address without port", `[{"type": "syslog", "address": "siem.example"}]`, "address"},
		{"relative file", `[{"type": "file", "path": "audit.ndjson"}]`, "path"},
		{"file with address", `[{"type": "file", "path": "/a", "address": "a:1"}]`, "address"},
		{"unknown format", `[{"type": "syslog", "address": "a:1", "format": "leef"}]`, "format"},
		{"relative caFile", `[{"type": "syslog", "address": "a:1", "caFile": "ca.pem"}]`, "caFile"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Validate("settings.json", []byte(settings(tc.forward)))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if len(d.Settings().Audit.Forward) == 0 {
					t.Fatalf("forward not decoded: %+v", d.Settings().Audit)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}
