package source_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"warden/source"
)

// nginxConf serves DIR/www/bundles/GROUP.tar.gz for GET
// /v1/agents/ANY/bundle as docs/fleet.md shows, and logs each request's
// status, body bytes and the agent's conditional and Prefer headers.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 64; }
http {
    log_format warden '$status $body_bytes_sent "$http_if_none_match" "$http_prefer"';
    access_log {{dir}}/access.log warden;
    client_body_temp_path {{dir}}/tmp/body;
    proxy_temp_path {{dir}}/tmp/proxy;
    fastcgi_temp_path {{dir}}/tmp/fastcgi;
    uwsgi_temp_path {{dir}}/tmp/uwsgi;
    scgi_temp_path {{dir}}/tmp/scgi;
    map $http_x_warden_group $warden_group {
        "~^[a-z0-9][a-z0-9-]{0,62}$"  $http_x_warden_group;
        default                       "default";
    }
    server {
        listen 127.0.0.1:{{port}};
        root {{dir}}/www;
        location ~ ^/v1/agents/[^/]+/bundle$ {
            default_type application/gzip;
            add_header Cache-Control no-cache;
            etag on;
            try_files /bundles/$warden_group.tar.gz =404;
        }
    }
}
`

// startNginx runs Debian's nginx on a free loopback port with a temporary
// configuration and returns its base URL and folder (bundles go in
// DIR/www/bundles).
func startNginx(t *testing.T) (url, dir string) {
	t.Helper()
	if _, err := exec.LookPath("nginx"); err != nil {
		t.Skip("nginx not installed (Debian package nginx, listed in .ci/packages.d/fleet)")
	}
	dir = t.TempDir()
	for _, d := range []string{"tmp", "www/bundles"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	conf := strings.NewReplacer("{{dir}}", dir, "{{port}}", fmt.Sprint(port)).Replace(nginxConf)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600)
	cmd := exec.Command("nginx", "-c", filepath.Join(dir, "nginx.conf"), "-p", dir, "-e", filepath.Join(dir, "error.log"))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			errLog, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx does not listen on %s: %v\n%s", addr, err, errLog)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + addr + "/v1", dir
}

// accessLog returns nginx's access log lines so far.
func accessLog(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "access.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Split(string(bytes.TrimSpace(data)), "\n")
}

// TestStaticNginx syncs an unregistered agent from a bundle file on nginx:
// the first poll fetches and applies it, an unchanged poll is one request
// answered 304 with no body, nginx ignores the long-polling offer so the
// agent falls back to interval polling, and a bundle replaced by rename
// reaches the running agent.
func TestStaticNginx(t *testing.T) {
	url, ndir := startNginx(t)
	keys, root := t.TempDir(), t.TempDir()
	if _, err := source.WriteKeyPair(keys); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, "trust"), 0o700)
	pub, _ := os.ReadFile(filepath.Join(keys, source.PublicKeyFile))
	os.WriteFile(filepath.Join(root, "trust", "fleet.pub"), pub, 0o600)
	bundle := filepath.Join(ndir, "www", "bundles", "lab.tar.gz")
	// The bundle carries the Settings that point at nginx, as a fleet's
	// bundles do, so applying it keeps the agent syncing.
	settings := `{"kind": "Settings", "id": "agent", "spec": {"backend": {"url": "` + url + `", "group": "lab", "pollSeconds": 5}}}`
	buildWith(t, keys, bundle, 1, settings, "a")
	a := openAgent(t, root)
	defer a.close()
	setBackend(t, a.store, 0, `{"url": "`+url+`", "group": "lab", "pollSeconds": 5}`)

	s := source.NewSync(a.store, a.p, root, nil)
	ctx := context.Background()
	if res, err := s.Poll(ctx); err != nil || res.Status != "applied" || res.Meta.BundleVersion != 1 {
		t.Fatalf("first poll: %+v %v", res, err)
	}
	res, err := s.Poll(ctx)
	if err != nil || res.Status != "unchanged" || res.LongPoll {
		t.Fatalf("second poll: %+v %v; want unchanged, not long-polled", res, err)
	}
	// nginx logs a request after answering it.
	var log []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if log = accessLog(t, ndir); len(log) >= 2 {
			break
		}
	}
	if len(log) != 2 || !strings.HasPrefix(log[0], "200 ") || !strings.HasPrefix(log[1], `304 0 "\x22`) || !strings.HasSuffix(log[1], `"wait=30"`) {
		t.Fatalf("nginx access log = %q; want a 200, then one 304 with no body for the If-None-Match poll (Prefer: wait=30 ignored)", log)
	}

	// Run: interval polling with jitter (nginx does not hold requests).
	s.SetTimings(300*time.Millisecond, 5*time.Millisecond, 50*time.Millisecond, time.Hour, 7)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); s.Run(runCtx) }()
	time.Sleep(1500 * time.Millisecond)
	buildWith(t, keys, bundle, 2, settings, "a", "b")
	waitVersion(t, a.store, 2)
	stop()
	<-done
	polls := len(accessLog(t, ndir)) - 2
	if polls < 2 || polls > 12 {
		t.Errorf("%d polls in about 1.5 s at a 300 ms interval: want about 5 (interval polling, no busy loop)", polls)
	}
}

// buildWith signs settings.json (when not empty) and one policy per id
// into path, atomically (write, then rename).
func buildWith(t testing.TB, keyDir, path string, version int64, settings string, ids ...string) {
	t.Helper()
	in := t.TempDir()
	os.MkdirAll(filepath.Join(in, "policies"), 0o700)
	for _, id := range ids {
		os.WriteFile(filepath.Join(in, "policies", id+".json"), []byte(strings.Replace(policy, "%s", id, 1)), 0o600)
	}
	if settings != "" {
		os.WriteFile(filepath.Join(in, source.SettingsFile), []byte(settings), 0o600)
	}
	key, err := source.LoadPrivateKey(filepath.Join(keyDir, source.PrivateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := source.Build(in, key, source.BuildOptions{Version: version})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".tmp", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}
