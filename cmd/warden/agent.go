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
		Long: `agent runs the warden agent in the foreground. Under systemd (JOURNAL_STREAM set and
stderr the journal's stream) it logs to stderr only, each line with its journald
priority; elsewhere it also writes ROOT/logs/agent.log, rotated daily and kept for
Settings logging.retentionDays (15 days by default). With NOTIFY_SOCKET set it
reports READY=1 once it serves, STOPPING=1 on stop, and pings WatchdogSec= while
its store and controller runtime answer.`,
		Example: `  warden agent --root /opt/warden
  warden agent --root ./.warden --listen-api 127.0.0.1:0 --log-format text --log-level debug`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Root = rootDir
			o.Journal = agent.UnderJournal()
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return agent.Run(ctx, o)
		},
	}
	cmd.Flags().StringVar(&o.ListenAPI, "listen-api", agent.DefaultAPI, "HTTPS API address, 127.0.0.1:PORT (port 0 picks one)")
	cmd.Flags().StringVar(&o.ListenHealth, "listen-health", agent.DefaultHealth, "plain HTTP /health address, 127.0.0.1:PORT")
	cmd.Flags().StringVar(&o.ListenMQTT, "listen-mqtt", agent.DefaultMQTT, "MQTT broker address (TLS), 127.0.0.1:PORT")
	cmd.Flags().StringVar(&o.LogFormat, "log-format", "json", "log format: json or text")
	cmd.Flags().StringVar(&o.LogLevel, "log-level", "", "log level: debug, info, warning or error (default: Settings logging.level)")
	cmd.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{"json", "text"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warning", "error"}, cobra.ShellCompDirectiveNoFileComp))
	rootCmd.AddCommand(cmd)
}
