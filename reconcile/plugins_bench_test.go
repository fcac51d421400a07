package reconcile

import (
	"slices"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPluginRestart measures the time from a plugin's death (kill -9
// of the heartbeat plugin) to its replacement running (the new process
// exec'd, validated executable, fresh certificate), with the first backoff
// step at 100 ms as systemd's RestartSec default. Each kill waits out the
// one-second restart window first, so every one meets the first step.
// Reported: median, p90 and max of death-to-running, and the median time
// for the exit to be noticed.
func BenchmarkPluginRestart(b *testing.B) {
	e := newPluginEnv(b)
	e.run(nil)
	sha := e.install("heartbeat")
	e.apply(pluginDoc(b, "heartbeat", "heartbeat", sha,
		`"restart": {"policy": "always", "backoffSeconds": 0.1, "maxRestarts": 1000, "windowSeconds": 1}`, "--interval", "1s"))
	cur := e.running("heartbeat", 0)
	var restart, noticed []time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		time.Sleep(1100 * time.Millisecond)
		b.StartTimer()
		t0 := time.Now()
		if err := syscall.Kill(cur.PID, syscall.SIGKILL); err != nil {
			b.Fatal(err)
		}
		next := e.running("heartbeat", cur.PID)
		restart = append(restart, next.LastStart.Sub(t0))
		noticed = append(noticed, next.LastExit.Sub(t0))
		cur = next
	}
	b.StopTimer()
	slices.Sort(restart)
	slices.Sort(noticed)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(restart[len(restart)/2]), "ms-median")
	b.ReportMetric(ms(restart[len(restart)*9/10]), "ms-p90")
	b.ReportMetric(ms(restart[len(restart)-1]), "ms-max")
	b.ReportMetric(ms(noticed[len(noticed)/2]), "ms-exit-noticed")
}
