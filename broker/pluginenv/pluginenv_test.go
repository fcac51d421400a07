package pluginenv_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"warden/broker/pluginenv"
	"warden/pki"
)

func issue(t *testing.T, role, name string) pluginenv.Credentials {
	t.Helper()
	ca, err := pki.Open(filepath.Join(t.TempDir(), "certs"), time.Now)
	if err != nil {
		t.Fatal(err)
	}
	c, k, _, err := ca.Issue(role, name, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return pluginenv.Credentials{CertPEM: c, KeyPEM: k, CAPEM: ca.CertPEM()}
}

func TestEncodeDecode(t *testing.T) {
	in := issue(t, pki.RolePlugin, "heartbeat")
	out, err := pluginenv.Decode(in.Encode())
	if err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2][]byte{"cert": {in.CertPEM, out.CertPEM}, "key": {in.KeyPEM, out.KeyPEM}, "ca": {in.CAPEM, out.CAPEM}} {
		if !bytes.Equal(bytes.TrimSpace(pair[0]), bytes.TrimSpace(pair[1])) {
			t.Errorf("%s changed in the round trip", name)
		}
	}
	for name, data := range map[string][]byte{
		"empty":     nil,
		"no key":    in.CertPEM,
		"no cert":   in.KeyPEM,
		"other PEM": append(in.Encode(), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"...),
	} {
		if _, err := pluginenv.Decode(data); err == nil {
			t.Errorf("Decode(%s) accepted", name)
		}
	}
}

func TestLoad(t *testing.T) {
	creds := issue(t, pki.RolePlugin, "heartbeat")
	write := func() string {
		p := filepath.Join(t.TempDir(), "creds.pem")
		if err := os.WriteFile(p, creds.Encode(), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, id, mqtt string
		wantErr        string
	}{
		{"id from certificate", "", "127.0.0.1:8675", ""},
		{"id matches", "heartbeat", "127.0.0.1:8675", ""},
		{"id differs", "other", "127.0.0.1:8675", "certificate is for"},
		{"no broker address", "", "", pluginenv.EnvMQTTAddr},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := write()
			t.Setenv(pluginenv.EnvCertFile, path)
			t.Setenv(pluginenv.EnvID, tc.id)
			t.Setenv(pluginenv.EnvMQTTAddr, tc.mqtt)
			cfg, err := pluginenv.Load()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load = %v, want an error about %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || cfg.ID != "heartbeat" || cfg.MQTTAddr != tc.mqtt {
				t.Fatalf("Load = %+v, %v", cfg, err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("credentials file not removed: %v", err)
			}
			if v, set := os.LookupEnv(pluginenv.EnvCertFile); set {
				t.Errorf("%s still set to %q", pluginenv.EnvCertFile, v)
			}
			if _, err := cfg.TLSConfig(); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("admin certificate", func(t *testing.T) {
		admin := issue(t, pki.RoleAdmin, pki.AdminName)
		p := filepath.Join(t.TempDir(), "creds.pem")
		os.WriteFile(p, admin.Encode(), 0o600)
		t.Setenv(pluginenv.EnvCertFile, p)
		t.Setenv(pluginenv.EnvMQTTAddr, "127.0.0.1:8675")
		if _, err := pluginenv.Load(); err == nil {
			t.Fatal("Load accepted an admin certificate")
		}
	})
	t.Run("nothing set", func(t *testing.T) {
		t.Setenv(pluginenv.EnvCertFile, "")
		t.Setenv(pluginenv.EnvCertFD, "")
		if _, err := pluginenv.Load(); err == nil {
			t.Fatal("Load without credentials succeeded")
		}
	})
}
