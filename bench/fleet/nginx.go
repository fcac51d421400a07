package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// nginxConf is docs/fleet.md's configuration over plain HTTP on loopback,
// one worker, with an access log of status, bytes sent (headers included)
// and body bytes.
const nginxConf = `daemon off;
master_process off;
worker_processes 1;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
worker_rlimit_nofile 4096;
events { worker_connections 2048; }
http {
    log_format warden '$status $bytes_sent $body_bytes_sent';
    access_log {{dir}}/access.log warden;
    client_body_temp_path {{dir}}/tmp/body;
    proxy_temp_path {{dir}}/tmp/proxy;
    fastcgi_temp_path {{dir}}/tmp/fastcgi;
    uwsgi_temp_path {{dir}}/tmp/uwsgi;
    scgi_temp_path {{dir}}/tmp/scgi;
    keepalive_timeout 75s;
    map $http_x_warden_group $warden_group {
        "~^[a-z0-9][a-z0-9-]{0,62}$"  $http_x_warden_group;
        default                       "default";
    }
    server {
        listen {{addr}};
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

type nginxServer struct {
	cmd  *exec.Cmd
	addr string
	dir  string
}

func startNginx(dir string) *nginxServer {
	ndir := filepath.Join(dir, "nginx")
	for _, d := range []string{"tmp", "www/bundles"} {
		check(os.MkdirAll(filepath.Join(ndir, d), 0o755))
	}
	addr := freeAddr()
	conf := strings.NewReplacer("{{dir}}", ndir, "{{addr}}", addr).Replace(nginxConf)
	check(os.WriteFile(filepath.Join(ndir, "nginx.conf"), []byte(conf), 0o644))
	cmd := exec.Command("nginx", "-c", filepath.Join(ndir, "nginx.conf"), "-p", ndir, "-e", filepath.Join(ndir, "error.log"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	check(cmd.Start())
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			panic("nginx does not listen on " + addr)
		}
	}
	return &nginxServer{cmd: cmd, addr: addr, dir: ndir}
}

func (n *nginxServer) url() string { return "http://" + n.addr + "/v1" }
func (n *nginxServer) bundlePath() string {
	return filepath.Join(n.dir, "www", "bundles", "lab.tar.gz")
}
func (n *nginxServer) pid() int { return n.cmd.Process.Pid }
func (n *nginxServer) stop()    { n.cmd.Process.Kill(); n.cmd.Wait() }

// counts reads the access log: requests, bytes sent, answers by status.
func (n *nginxServer) counts() (int64, int64, map[string]int64) {
	data, err := os.ReadFile(filepath.Join(n.dir, "access.log"))
	if err != nil {
		return 0, 0, map[string]int64{}
	}
	var reqs, bytes int64
	answers := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var code string
		var sent, body int64
		if _, err := fmt.Sscanf(line, "%s %d %d", &code, &sent, &body); err != nil {
			continue
		}
		reqs++
		bytes += sent
		if code == "304" && body == 0 {
			code += " (no body)"
		}
		answers["GET "+code]++
	}
	return reqs, bytes, answers
}
