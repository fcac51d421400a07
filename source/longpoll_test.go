package source_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"warden/source"
)

// registeredAgent starts the reference backend with group "lab" and an
// agent registered with it.
func registeredAgent(t *testing.T) (keys, bundle string, be *backendProc, a *agentProc) {
	t.Helper()
	keys, root, bdir, bundle := backendFixture(t, "enrol-lp")
	be = &backendProc{t: t, dir: bdir}
	be.start()
	t.Cleanup(be.stop)
	a = openAgent(t, root)
	t.Cleanup(a.close)
	if _, err := source.Register(context.Background(), a.store, a.aw, source.RegisterOptions{URL: "http://" + be.addr + "/v1", Token: "enrol-lp"}); err != nil {
		t.Fatal(err)
	}
	return keys, bundle, be, a
}

// TestLongPollDeliversNewBundle: a bundle published while the agent's
// request is held arrives well before the next interval poll could have
// fetched it (20 s, less 10% jitter), so it came through the held
// request. Idle, the agent asks about once per wait, not in a loop.
func TestLongPollDeliversNewBundle(t *testing.T) {
	keys, bundle, be, a := registeredAgent(t)
	buildTo(t, keys, bundle, 1, "a")
	s := source.NewSync(a.store, a.p, a.root, nil)
	const interval = 20 * time.Second
	s.SetTimings(interval, 5*time.Millisecond, 50*time.Millisecond, time.Hour, 7)
	s.SetLongPoll(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitVersion(t, a.store, 1)

	time.Sleep(3500 * time.Millisecond) // idle: held requests of 1 s each
	if n := be.count(http.StatusNotModified); n < 1 || n > 5 {
		t.Errorf("%d requests answered 304 in 3.5 s idle with wait=1: want about 3 (held, not a loop)", n)
	}
	published := time.Now()
	buildTo(t, keys, bundle, 2, "a", "b")
	waitVersion(t, a.store, 2)
	if took := time.Since(published); took >= interval*9/10 {
		t.Errorf("new bundle applied %s after publishing: that is interval polling, not the held request", took)
	}
}

// TestLongPollHeldUntilChange asks the reference backend directly: a
// request with the current ETag and Prefer: wait=N is held and answered
// 304 after N seconds with Preference-Applied; one in flight when a new
// bundle is published is answered 200 with it.
func TestLongPollHeldUntilChange(t *testing.T) {
	keys, bundle, be, a := registeredAgent(t)
	buildTo(t, keys, bundle, 1, "a")
	s := source.NewSync(a.store, a.p, a.root, nil)
	s.SetLongPoll(time.Second)
	ctx := context.Background()
	if res, err := s.Poll(ctx); err != nil || res.Status != "applied" {
		t.Fatalf("first poll: %+v %v", res, err)
	}
	res, err := s.Poll(ctx)
	if err != nil || res.Status != "unchanged" || !res.LongPoll || res.Took < 900*time.Millisecond {
		t.Fatalf("held poll: %+v %v; want unchanged after about 1 s, long-polled", res, err)
	}
	s.SetLongPoll(20 * time.Second)
	go func() {
		time.Sleep(300 * time.Millisecond)
		buildTo(t, keys, bundle, 2, "a", "b")
	}()
	res, err = s.Poll(ctx)
	if err != nil || res.Status != "applied" || !res.LongPoll || res.Took > 15*time.Second {
		t.Fatalf("poll held across a publish: %+v %v; want applied long before the 20 s wait", res, err)
	}
	if be.count(http.StatusOK) != 2 {
		t.Errorf("%d bundles sent, want 2", be.count(http.StatusOK))
	}
}
