package warm

import (
	"fmt"
	"strings"
	"time"

	"github.com/go-co-op/gocron/v2"
)

// schedule is a strategy's cron schedule, as gocron's default parser reads
// it, with two changes for a fleet: "@every <d>" fires on multiples of d
// rather than d after the instance started, so that every instance agrees
// on the scheduled times; and runAt finds the scheduled time of the run
// that fires at a given moment, which names the run's fleet-wide record.
type schedule struct {
	every time.Duration // > 0 for "@every <d>"
	cron  gocron.Cron
}

var _ gocron.Cron = (*schedule)(nil)

// IsValid implements gocron.Cron: it parses crontab.
func (s *schedule) IsValid(crontab string, loc *time.Location, now time.Time) error {
	s.cron = gocron.NewDefaultCron(true)
	if err := s.cron.IsValid(crontab, loc, now); err != nil {
		return err
	}
	expr := crontab
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		_, expr, _ = strings.Cut(expr, " ")
	}
	if d, ok := strings.CutPrefix(strings.TrimSpace(expr), "@every "); ok {
		every, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return fmt.Errorf("@every: %w", err)
		}
		// As gocron's parser: whole seconds, at least one.
		s.every = max(every.Truncate(time.Second), time.Second)
	}
	return nil
}

// Next implements gocron.Cron: the first scheduled time after last.
func (s *schedule) Next(last time.Time) time.Time {
	if s.every > 0 {
		return last.Truncate(s.every).Add(s.every)
	}
	return s.cron.Next(last)
}

// runAt returns the scheduled time of the run firing at now: the last
// scheduled time not after now.
func (s *schedule) runAt(now time.Time) time.Time {
	if s.every > 0 {
		return now.Truncate(s.every)
	}
	// Look back twice as far each time until a scheduled time turns up,
	// then walk forward to the last one.
	for back := time.Second; back <= 800*24*time.Hour; back *= 2 {
		t := s.cron.Next(now.Add(-back))
		if t.IsZero() || t.After(now) {
			continue
		}
		for {
			n := s.cron.Next(t)
			if n.IsZero() || n.After(now) {
				return t
			}
			t = n
		}
	}
	return now.Truncate(time.Second)
}
