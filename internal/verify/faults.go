package verify

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/redis/rueidis"
)

// Fault is a fault step the operator allowed: Do runs once, At after the
// start of the run.
type Fault struct {
	Name string
	At   time.Duration
	Do   func(ctx context.Context) error
}

// FaultReport is what one fault step did and cost.
type FaultReport struct {
	Name  string        `json:"name"`
	At    time.Duration `json:"at_ns"`
	Error string        `json:"error,omitempty"`
	// WriteOutage is the longest time, from the fault on, during which
	// no write, delete or invalidation was acknowledged by any instance.
	WriteOutage time.Duration `json:"write_outage_ns"`
}

// runFaults runs each fault at its time; it returns when all have run or
// ctx is done.
func (r *run) runFaults(ctx context.Context, begin time.Time) []FaultReport {
	reps := make([]FaultReport, len(r.cfg.Faults))
	for i, f := range r.cfg.Faults {
		reps[i] = FaultReport{Name: f.Name, At: f.At}
		select {
		case <-time.After(time.Until(begin.Add(f.At))):
		case <-ctx.Done():
			reps[i].Error = "not run: the run ended first"
			continue
		}
		if err := f.Do(ctx); err != nil {
			reps[i].Error = err.Error()
		}
	}
	return reps
}

// outage is the longest gap between acknowledgements after from, the
// end of the run closing the last gap.
func (r *run) outage(from, end time.Time) time.Duration {
	var acks []time.Time
	for _, ops := range r.groups {
		for _, o := range ops {
			if !o.failed && o.ack.After(from) {
				acks = append(acks, o.ack)
			}
		}
	}
	sort.Slice(acks, func(i, j int) bool { return acks[i].Before(acks[j]) })
	prev, worst := from, time.Duration(0)
	for _, a := range append(acks, end) {
		worst = max(worst, a.Sub(prev))
		prev = a
	}
	return worst
}

// SentinelFailover returns a fault step that asks the sentinels, one after
// the other until one accepts, to fail master over (SENTINEL FAILOVER).
func SentinelFailover(sentinels []string, username, password, master string) Fault {
	return Fault{Name: "sentinel-failover", Do: func(ctx context.Context) error {
		var last error
		for _, addr := range sentinels {
			c, err := rueidis.NewClient(rueidis.ClientOption{
				InitAddress: []string{addr}, Username: username, Password: password,
				DisableCache: true, ForceSingleClient: true, DisableRetry: true,
			})
			if err != nil {
				last = err
				continue
			}
			err = c.Do(ctx, c.B().Arbitrary("SENTINEL", "FAILOVER").Args(master).Build()).Error()
			c.Close()
			if err == nil {
				return nil
			}
			last = err
		}
		return fmt.Errorf("SENTINEL FAILOVER %s: %w", master, last)
	}}
}
