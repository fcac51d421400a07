// Command apiload drives a running agent's API with keep-alive connections
// and reports requests/s and latency percentiles. Unlike wrk it can present
// the admin client certificate, so it measures authenticated routes too.
//
//	go run ./bench/apiload --root .warden --path /api/v1/status --conns 16 --duration 10s
//	go run ./bench/apiload --root .warden --health --conns 16 --duration 10s
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"warden/agent"
	"warden/pki"
)

func main() {
	root := flag.String("root", ".warden", "agent root")
	path := flag.String("path", "/api/v1/status", "route to call on the HTTPS API")
	method := flag.String("method", "GET", "HTTP method")
	body := flag.String("body", "", "request body (JSON)")
	health := flag.Bool("health", false, "call plain-HTTP /health instead")
	conns := flag.Int("conns", 16, "concurrent keep-alive connections")
	dur := flag.Duration("duration", 10*time.Second, "how long to run")
	flag.Parse()

	info, err := agent.ReadInfo(*root)
	if err != nil {
		fail(err)
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns}
	url := "http://" + info.Health + "/health"
	if !*health {
		conf, err := pki.ClientTLSConfig(filepath.Join(*root, "certs"))
		if err != nil {
			fail(err)
		}
		tr.TLSClientConfig = conf
		url = "https://" + info.API + *path
	}
	client := &http.Client{Transport: tr}
	var n, errs atomic.Int64
	lat := make([][]time.Duration, *conns)
	deadline := time.Now().Add(*dur)
	var wg sync.WaitGroup
	for c := 0; c < *conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(*method, url, bytes.NewBufferString(*body))
				req.Host = "localhost"
				if *body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					errs.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs.Add(1)
					continue
				}
				lat[c] = append(lat[c], time.Since(t0))
				n.Add(1)
			}
		}(c)
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) == 0 {
		fail(fmt.Errorf("no successful requests (%d errors)", errs.Load()))
	}
	fmt.Printf("%s: %d requests in %s with %d connections: %.0f req/s, p50 %s, p99 %s, errors %d\n",
		url, n.Load(), *dur, *conns, float64(n.Load())/dur.Seconds(), all[len(all)/2], all[len(all)*99/100], errs.Load())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "apiload:", err)
	os.Exit(2)
}
