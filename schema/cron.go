package schema

import (
	"fmt"
	"time"
	_ "time/tzdata" // zones resolve the same on every host, minimal images included

	"github.com/robfig/cron/v3"
)

// cronParser reads a schedule as #Cron describes it: five standard fields
// (minute hour day-of-month month day-of-week) or an @ descriptor.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseSchedule parses a Job's schedule in the named time zone ("" is the
// agent's local zone, as for cron). Validate has accepted every schedule
// and zone of a valid Job, so for those it does not fail.
func ParseSchedule(expr, zone string) (cron.Schedule, error) {
	loc := time.Local
	if zone != "" {
		var err error
		if loc, err = time.LoadLocation(zone); err != nil {
			return nil, fmt.Errorf("timeZone %q: %w", zone, err)
		}
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", expr, err)
	}
	if spec, ok := s.(*cron.SpecSchedule); ok {
		spec.Location = loc
	}
	return s, nil
}

// checkJob checks what #Job's patterns cannot: that a schedule's ranges
// run forwards (5-1 has the shape of a range) and that its time zone
// exists (Europe/Berln has the shape of one).
func checkJob(name string, j *JobSpec) Errors {
	var errs Errors
	t := j.Trigger
	if t.TimeZone != "" {
		if _, err := time.LoadLocation(t.TimeZone); err != nil {
			errs = append(errs, Issue{File: name, Path: "spec.trigger.timeZone",
				Msg: fmt.Sprintf("invalid value %q (not a known time zone)", t.TimeZone)})
		}
	}
	if t.Schedule != "" {
		if _, err := cronParser.Parse(t.Schedule); err != nil {
			errs = append(errs, Issue{File: name, Path: "spec.trigger.schedule",
				Msg: fmt.Sprintf("invalid value %q (%v)", t.Schedule, err)})
		}
	}
	return errs
}
