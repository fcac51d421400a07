// Package agenttest runs a real agent inside a test's process, on a root
// the test chose, with every listener on a free loopback port: for the
// tests of packages that need one serving (doctor, elevate). The agent's
// own tests start it from inside the package.
package agenttest

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"warden/agent"
)

// Start runs agent.Run on root and returns once the agent serves, with its
// Info and stop. stop ends the agent and returns Run's error; it does so
// once (later calls return the same error), and the test's cleanup calls
// it, reporting an error the test did not see.
func Start(t testing.TB, root string) (agent.Info, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan agent.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(ctx, agent.Options{Root: root, ListenAPI: "127.0.0.1:0", ListenHealth: "127.0.0.1:0",
			ListenMQTT: "127.0.0.1:0", LogOutput: io.Discard, Ready: func(i agent.Info) { ready <- i }})
	}()
	var (
		once   sync.Once
		runErr error
	)
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	select {
	case info := <-ready:
		return info, stop
	case err := <-done:
		once.Do(func() { cancel() })
		t.Fatalf("agent did not start: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not start within 30 s")
	}
	return agent.Info{}, stop
}
