package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
)

// The floor (--floor): Go's net/http HTTPS server (HTTP/1.1, TLS 1.3)
// that reads each request's body and answers a fixed small JSON object,
// deciding nothing, in its own process, driven by the same client in the
// same runs. Its CPU per request is what any decision service written on
// net/http pays before it decides anything (OPA's server and warden's
// API are both built on it): the part of the ratio no decision engine or
// audit path can change.

// floorArg, as the first argument, makes this program the floor server:
// floor-serve ADDR CERT KEY.
const floorArg = "floor-serve"

// floorAnswer is the floor's answer to every request. Its answers are
// not checked against the decisions (it makes none); the status is.
const floorAnswer = `{"decision":"floor"}`

func serveFloor(addr, certFile, keyFile string) {
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, floorAnswer)
	}), TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}}}
	check(srv.ListenAndServeTLS(certFile, keyFile))
}

func startFloor(dir string) *server {
	certFile, keyFile, pool := selfSigned(dir, "floor")
	addr := "127.0.0.1:" + strconv.Itoa(freePort())
	self, err := os.Executable()
	check(err)
	cmd := exec.Command(self, floorArg, addr, certFile, keyFile)
	startStopped(cmd)
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	s := &server{name: "floor", url: "https://" + addr + "/", floor: true,
		pid: func() int { return cmd.Process.Pid }, client: client(cfg), tls: cfg,
		body:   func(r []byte) []byte { return r },
		answer: func([]byte) string { return "" }}
	waitFor("floor serving", func() bool {
		resp, err := s.client.Get(s.url)
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
	return s
}
