package main

import (
	"context"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"warden/agent"
)

func init() {
	var o agent.Options
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent: serve the local API and broker, reconcile desired state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Root = rootDir
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return agent.Run(ctx, o)
		},
	}
	cmd.Flags().StringVar(&o.ListenAPI, "listen-api", agent.DefaultAPI, "HTTPS API address (loopback only; port 0 picks one)")
	cmd.Flags().StringVar(&o.ListenHealth, "listen-health", agent.DefaultHealth, "plain HTTP /health address (loopback only)")
	cmd.Flags().StringVar(&o.ListenMQTT, "listen-mqtt", agent.DefaultMQTT, "MQTT broker address, TLS (loopback only)")
	rootCmd.AddCommand(cmd)
}
