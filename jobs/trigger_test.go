package jobs

import (
	"testing"
	"time"

	"warden/schema"
)

func TestPlanNextTimes(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	cases := []struct {
		name     string
		trigger  schema.JobTrigger
		now      time.Time
		wantNext time.Time
		wantKind string
	}{
		{"every 5 min", schema.JobTrigger{Schedule: "*/5 * * * *", TimeZone: "UTC"}, t0, time.Date(2026, 3, 2, 10, 5, 0, 0, time.UTC), TriggerSchedule},
		{"daily 03:00 New York", schema.JobTrigger{Schedule: "0 3 * * *", TimeZone: "America/New_York"}, t0, time.Date(2026, 3, 3, 3, 0, 0, 0, ny), TriggerSchedule},
		{"DST start day", schema.JobTrigger{Schedule: "30 2 * * *", TimeZone: "America/New_York"}, time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC), time.Date(2026, 3, 9, 2, 30, 0, 0, ny), TriggerSchedule},
		{"hourly shorthand", schema.JobTrigger{Schedule: "@hourly", TimeZone: "UTC"}, t0, time.Date(2026, 3, 2, 11, 0, 0, 0, time.UTC), TriggerSchedule},
		{"runAt earlier than schedule", schema.JobTrigger{Schedule: "@daily", TimeZone: "UTC", RunAt: "2026-03-02T10:30:00Z"}, t0, time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC), TriggerRunAt},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := parsePlan(c.trigger)
			if err != nil {
				t.Fatal(err)
			}
			var tm timed
			if p.cron != nil {
				tm.cron = p.cron.Next(c.now)
			}
			tm.runAt = p.runAt
			got, kind := tm.earliest()
			if !got.Equal(c.wantNext) || kind != c.wantKind {
				t.Errorf("next = %s %s, want %s %s", got, kind, c.wantNext, c.wantKind)
			}
		})
	}
}

func TestPlanRejectsUnknownZone(t *testing.T) {
	if _, err := parsePlan(schema.JobTrigger{Schedule: "* * * * *", TimeZone: "Mars/Olympus_Mons"}); err == nil {
		t.Fatal("an unknown time zone was accepted")
	}
}

func TestMissed(t *testing.T) {
	p, _ := parsePlan(schema.JobTrigger{Schedule: "0 * * * *", TimeZone: "UTC"})
	n, last := missedCron(p.cron, t0, t0.Add(5*time.Hour))
	if n != 5 || !last.Equal(time.Date(2026, 3, 2, 15, 0, 0, 0, time.UTC)) {
		t.Errorf("missedCron = %d, %s; want 5, 15:00", n, last)
	}
	if n, _ := missedCron(p.cron, t0, t0.Add(30*time.Minute)); n != 0 {
		t.Errorf("missedCron within the hour = %d, want 0", n)
	}
	grid := []struct {
		now       time.Duration
		wantNext  time.Duration
		wantSkips int
	}{
		{5 * time.Minute, 10 * time.Minute, 0},
		{10 * time.Minute, 20 * time.Minute, 1},
		{35 * time.Minute, 40 * time.Minute, 3},
	}
	for _, g := range grid {
		next, n := nextOnGrid(t0, t0.Add(g.now), 10*time.Minute)
		if !next.Equal(t0.Add(g.wantNext)) || n != g.wantSkips {
			t.Errorf("nextOnGrid(now=+%s) = +%s, %d; want +%s, %d", g.now, next.Sub(t0), n, g.wantNext, g.wantSkips)
		}
	}
}

func TestShouldRun(t *testing.T) {
	cases := []struct {
		cond                 string
		ran, prevOK, stopped bool
		want                 bool
	}{
		{"", false, true, false, true},
		{"", true, false, true, false},
		{"", true, false, false, true}, // previous failed with continueOnError
		{"success", false, true, false, true},
		{"success", true, false, true, false},
		{"success", true, true, true, true},
		{"failure", false, true, false, false},
		{"failure", true, false, true, true},
		{"failure", true, true, false, false},
		{"always", true, false, true, true},
	}
	for _, c := range cases {
		if got := shouldRun(c.cond, c.ran, c.prevOK, c.stopped); got != c.want {
			t.Errorf("shouldRun(%q, ran=%v, prevOK=%v, stopped=%v) = %v, want %v", c.cond, c.ran, c.prevOK, c.stopped, got, c.want)
		}
	}
}

func TestCappedOutput(t *testing.T) {
	c := newCapped(10)
	for _, s := range []string{"hello", " world", "!!!"} {
		if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if string(c.buf) != "hello worl" || c.dropped != 4 || cap(c.buf) != 10 {
		t.Errorf("kept %q (cap %d), dropped %d; want \"hello worl\", 10, 4", c.buf, cap(c.buf), c.dropped)
	}
}
