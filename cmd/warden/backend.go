package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"warden/source/backend"
)

func init() {
	var dir, listen, prefix, certFile, keyFile string
	serve := &cobra.Command{
		Use:   "serve --dir DIR --listen ADDR",
		Short: "run the reference backend: registrations, bundles per group, audit upload",
		Long: `serve runs warden's reference backend over one folder:
  DIR/tokens.json           [{"token": "...", "group": "lab"}] enrolment tokens
  DIR/bundles/GROUP.tar.gz  the latest bundle of each group (replace by rename)
  DIR/agents.json           registered agents (credentials only as SHA-256)
  DIR/audit/AGENT.ndjson    uploaded audit events
With --tls-cert and --tls-key it serves HTTPS (TLS 1.2+); otherwise plain HTTP,
for tests and loopback use.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
			s, err := backend.New(dir, log)
			if err != nil {
				return err
			}
			defer s.Close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			srv := &http.Server{Handler: s.Handler(prefix), ReadHeaderTimeout: 10 * time.Second}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			go func() {
				<-ctx.Done()
				shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				srv.Shutdown(shut)
			}()
			scheme := "http"
			if certFile != "" {
				scheme = "https"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backend serving %s on %s://%s%s\n", dir, scheme, ln.Addr(), prefix)
			if certFile != "" {
				err = srv.ServeTLS(ln, certFile, keyFile)
			} else {
				err = srv.Serve(ln)
			}
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return err
		},
	}
	f := serve.Flags()
	f.StringVar(&dir, "dir", "", "backend folder")
	f.StringVar(&listen, "listen", "127.0.0.1:8443", "address to listen on (port 0 picks one)")
	f.StringVar(&prefix, "prefix", "", "URL path prefix, e.g. /v1")
	f.StringVar(&certFile, "tls-cert", "", "server certificate (PEM)")
	f.StringVar(&keyFile, "tls-key", "", "server key (PEM)")
	serve.MarkFlagRequired("dir")
	cmd := &cobra.Command{Use: "backend", Short: "the reference backend"}
	cmd.AddCommand(serve)
	rootCmd.AddCommand(cmd)
}
