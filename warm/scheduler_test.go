package warm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/tiercache/tiercache"
)

// t0 is 30 s before a minute boundary, so "* * * * *" fires at t0+30s.
var t0 = time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)

// minute returns the k-th minute boundary after t0.
func minute(k int) time.Time { return t0.Add(-30*time.Second + time.Duration(k)*time.Minute) }

func newScheduler(t testing.TB, r *Runner, opts SchedulerOptions) *Scheduler {
	t.Helper()
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := NewScheduler(r, opts)
	if err != nil {
		t.Fatalf("NewScheduler: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// statusOf returns the status of the strategy called name.
func statusOf(r *Runner, name string) Status {
	for _, s := range r.Status() {
		if s.Name == name {
			return s
		}
	}
	return Status{}
}

// waitNext waits until every runner has scheduled name's next run at when:
// advancing the clock before that would skip the run.
func waitNext(t *testing.T, name string, when time.Time, runners ...*Runner) {
	t.Helper()
	eventually(t, waitFor, "next run at "+when.Format(time.TimeOnly), func() error {
		for i, r := range runners {
			if got := statusOf(r, name).NextRun; !got.Equal(when) {
				return fmt.Errorf("instance %d: next run %v", i, got)
			}
		}
		return nil
	})
}

// passHold advances the fake clock by MinHold and waits for the run's
// fleet lock to be released. On a real clock the release comes long before
// the next tick; a fake clock fires both at once, in either order.
func passHold(t *testing.T, clk *clockwork.FakeClock, c *tiercache.Cache, strategy string, hold time.Duration) {
	t.Helper()
	clk.Advance(hold)
	eventually(t, waitFor, "lock released", func() error {
		l, err := c.TryLock(t.Context(), lockName(strategy), time.Second)
		if err != nil {
			return err
		}
		return l.Unlock(t.Context())
	})
}

// advanceTo moves the fake clock to when.
func advanceTo(clk *clockwork.FakeClock, when time.Time) { clk.Advance(when.Sub(clk.Now())) }

func TestScheduler_Cron(t *testing.T) {
	eachTopology(t, allTopologies, func(t *testing.T, tp topology) {
		c := newCache(t, tp, "")
		clk := clockwork.NewFakeClockAt(t0)
		var calls atomic.Int32
		count := func(ctx context.Context, yield func(Item) error) error {
			n := calls.Add(1)
			return yield(Item{Key: fmt.Sprintf("run-%d", n), Value: n})
		}
		r := newRunner(t, Options{Cache: c, Clock: clk},
			Strategy{Name: "minutely", Enabled: true, Schedule: "* * * * *", Generator: count},
			Strategy{Name: "unscheduled", Enabled: true, WarmOnDemand: true, Generator: count},
			Strategy{Name: "disabled", Schedule: "* * * * *", Generator: count},
		)
		s := newScheduler(t, r, SchedulerOptions{MinHold: time.Second})
		s.Start()
		waitNext(t, "minutely", minute(1), r)
		for _, name := range []string{"unscheduled", "disabled"} {
			if st := statusOf(r, name); !st.NextRun.IsZero() {
				t.Fatalf("%s scheduled at %v", name, st.NextRun)
			}
		}
		for k := 1; k <= 3; k++ {
			advanceTo(clk, minute(k))
			eventually(t, waitFor, fmt.Sprintf("run %d", k), func() error {
				st := statusOf(r, "minutely")
				if st.Runs != int64(k) || st.Running {
					return fmt.Errorf("%d runs, running %v", st.Runs, st.Running)
				}
				if st.Last.Trigger != TriggerSchedule || st.Last.Written != 1 || !st.Last.Started.Equal(minute(k)) {
					return fmt.Errorf("last %+v", st.Last)
				}
				return nil
			})
			waitNext(t, "minutely", minute(k+1), r)
			passHold(t, clk, c, "minutely", time.Second)
		}
		if calls.Load() != 3 {
			t.Fatalf("%d generator calls, want 3", calls.Load())
		}
		wantPresent(t, c, map[string]bool{"run-3": true})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if st := statusOf(r, "minutely"); !st.NextRun.IsZero() {
			t.Fatalf("next run %v after Close", st.NextRun)
		}
	})
}

// TestScheduler_Singleton: ticks that come while a run is still going are
// skipped, not queued behind it.
func TestScheduler_Singleton(t *testing.T) {
	c := newCache(t, topology{name: "memory"}, "")
	clk := clockwork.NewFakeClockAt(t0)
	release := make(chan struct{})
	var calls atomic.Int32
	r := newRunner(t, Options{Cache: c, Clock: clk}, Strategy{Name: "slow", Enabled: true, Schedule: "* * * * *",
		Generator: func(ctx context.Context, yield func(Item) error) error {
			if calls.Add(1) == 1 {
				<-release
			}
			return yield(Item{Key: "k", Value: 1})
		}})
	s := newScheduler(t, r, SchedulerOptions{MinHold: time.Second})
	s.Start()
	waitNext(t, "slow", minute(1), r)
	advanceTo(clk, minute(1))
	eventually(t, waitFor, "the first run starts", func() error {
		if !statusOf(r, "slow").Running {
			return errors.New("not running")
		}
		return nil
	})
	for k := 2; k <= 3; k++ {
		waitNext(t, "slow", minute(k), r)
		advanceTo(clk, minute(k))
		eventually(t, waitFor, fmt.Sprintf("tick %d skipped", k), func() error {
			if st := statusOf(r, "slow"); st.Overlapped != int64(k-1) {
				return fmt.Errorf("%d overlapped", st.Overlapped)
			}
			return nil
		})
	}
	waitNext(t, "slow", minute(4), r)
	close(release)
	eventually(t, waitFor, "the first run ends", func() error {
		if st := statusOf(r, "slow"); st.Runs != 1 || st.Running {
			return fmt.Errorf("%+v", st)
		}
		return nil
	})
	passHold(t, clk, c, "slow", time.Second)
	advanceTo(clk, minute(4))
	eventually(t, waitFor, "the next tick runs", func() error {
		if st := statusOf(r, "slow"); st.Runs != 2 {
			return fmt.Errorf("%d runs", st.Runs)
		}
		return nil
	})
	if n := calls.Load(); n != 2 {
		t.Fatalf("%d generator calls, want 2: overlapping ticks ran", n)
	}
}

// TestScheduler_OneRunnerPerFleet runs three instances (cache, runner and
// scheduler each) on one Redis and one namespace, all on one fake clock:
// every scheduled run happens on exactly one of them.
func TestScheduler_OneRunnerPerFleet(t *testing.T) {
	eachTopology(t, redisTopologies, func(t *testing.T, tp topology) {
		const instances, ticks = 3, 4
		ns := testNamespace(t)
		clk := clockwork.NewFakeClockAt(t0)
		var calls atomic.Int32
		gen := func(ctx context.Context, yield func(Item) error) error {
			n := calls.Add(1)
			return yield(Item{Key: fmt.Sprintf("tick-%d", n), Value: n})
		}
		var caches []*tiercache.Cache
		var runners []*Runner
		for range instances {
			c := newCache(t, tp, ns)
			r := newRunner(t, Options{Cache: c, Clock: clk},
				Strategy{Name: "fleet", Enabled: true, Schedule: "* * * * *", Generator: gen})
			newScheduler(t, r, SchedulerOptions{MinHold: 10 * time.Second}).Start()
			caches, runners = append(caches, c), append(runners, r)
		}
		for k := 1; k <= ticks; k++ {
			waitNext(t, "fleet", minute(k), runners...)
			advanceTo(clk, minute(k))
			eventually(t, waitFor, fmt.Sprintf("tick %d", k), func() error {
				var runs, attempts int64
				for _, r := range runners {
					st := statusOf(r, "fleet")
					if st.Running {
						return errors.New("still running")
					}
					runs += st.Runs
					attempts += st.Runs + st.Skipped
				}
				if runs != int64(k) || attempts != int64(k*instances) {
					return fmt.Errorf("%d runs and %d attempts, want %d and %d", runs, attempts, k, k*instances)
				}
				return nil
			})
			passHold(t, clk, caches[0], "fleet", 10*time.Second)
		}
		if n := calls.Load(); n != ticks {
			t.Fatalf("the generator ran %d times for %d ticks", n, ticks)
		}
		var lines []string
		for i, r := range runners {
			st := statusOf(r, "fleet")
			lines = append(lines, fmt.Sprintf("instance %d: %d runs, %d skipped", i, st.Runs, st.Skipped))
		}
		t.Log(strings.Join(lines, "; "))
		wantPresent(t, caches[2], map[string]bool{fmt.Sprintf("tick-%d", ticks): true})
	})
}

func TestNewScheduler_Invalid(t *testing.T) {
	t.Parallel()
	r := newRunner(t, Options{Cache: newCache(t, topology{name: "memory"}, "")})
	for _, tc := range []struct {
		name string
		opts SchedulerOptions
		want string
	}{
		{"negative lock TTL", SchedulerOptions{LockTTL: -time.Second}, "LockTTL -1s is negative"},
		{"hold beyond TTL", SchedulerOptions{LockTTL: time.Second, MinHold: time.Minute}, "MinHold 1m0s must be between 0 and LockTTL (1s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewScheduler(r, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}
