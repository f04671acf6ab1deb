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
		s := newScheduler(t, r, SchedulerOptions{})
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
	s := newScheduler(t, r, SchedulerOptions{})
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
			newScheduler(t, r, SchedulerOptions{}).Start()
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
					// Overlapped: gocron's singleton mode still held this
					// instance's previous run (it frees it a moment after
					// the run is reported finished) when the clock moved.
					attempts += st.Runs + st.Skipped + st.Overlapped
				}
				if runs != int64(k) || attempts != int64(k*instances) {
					return fmt.Errorf("%d runs and %d attempts, want %d and %d", runs, attempts, k, k*instances)
				}
				return nil
			})
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewScheduler(r, tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// blocking returns a generator whose first call blocks until release is
// closed (or its run is cancelled), and that counts its calls.
func blocking(calls *atomic.Int32, release <-chan struct{}) Generator {
	return func(ctx context.Context, yield func(Item) error) error {
		n := calls.Add(1)
		if n == 1 {
			select {
			case <-release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return yield(Item{Key: fmt.Sprintf("run-%d", n), Value: n})
	}
}

// fleetOf starts n instances on tp in one namespace, each with its own
// fake clock at t0 so that an instance can fire late.
func fleetOf(t *testing.T, tp topology, n int, opts SchedulerOptions, s Strategy) ([]*tiercache.Cache, []*Runner, []*clockwork.FakeClock) {
	t.Helper()
	ns := testNamespace(t)
	var caches []*tiercache.Cache
	var runners []*Runner
	var clocks []*clockwork.FakeClock
	for range n {
		clk := clockwork.NewFakeClockAt(t0)
		c := newCache(t, tp, ns)
		r := newRunner(t, Options{Cache: c, Clock: clk}, s)
		newScheduler(t, r, opts).Start()
		caches, runners, clocks = append(caches, c), append(runners, r), append(clocks, clk)
	}
	return caches, runners, clocks
}

// sumStatus adds up name's counters over runners.
func sumStatus(runners []*Runner, name string) (runs, skipped, overlapped, running int64) {
	for _, r := range runners {
		st := statusOf(r, name)
		runs, skipped, overlapped = runs+st.Runs, skipped+st.Skipped, overlapped+st.Overlapped
		if st.Running {
			running++
		}
	}
	return
}

// TestScheduler_RunLongerThanLockTTL: a run that outlasts the fleet lock's
// TTL still runs once, even for an instance that fires it after the lock
// expired (its clock is behind); and the next scheduled run happens once.
func TestScheduler_RunLongerThanLockTTL(t *testing.T) {
	eachTopology(t, redisTopologies, func(t *testing.T, tp topology) {
		var calls atomic.Int32
		release := make(chan struct{})
		caches, runners, clocks := fleetOf(t, tp, 3, SchedulerOptions{LockTTL: 300 * time.Millisecond},
			Strategy{Name: "long", Enabled: true, Schedule: "* * * * *", Generator: blocking(&calls, release)})
		waitNext(t, "long", minute(1), runners...)
		// Instances 0 and 1 fire on time; one runs, and blocks.
		advanceTo(clocks[0], minute(1))
		advanceTo(clocks[1], minute(1))
		eventually(t, waitFor, "one run going, one skipped", func() error {
			if runs, skipped, _, running := sumStatus(runners[:2], "long"); running != 1 || skipped != 1 || runs != 0 {
				return fmt.Errorf("running %d, skipped %d, runs %d", running, skipped, runs)
			}
			return nil
		})
		// The run goes on past its lock's TTL.
		eventually(t, waitFor, "the running lock expires", func() error {
			l, err := caches[2].TryLock(t.Context(), lockName("long"), time.Second)
			if err != nil {
				return err
			}
			return l.Unlock(t.Context())
		})
		// Instance 2, whose clock is behind, fires the same run now.
		advanceTo(clocks[2], minute(1))
		eventually(t, waitFor, "the late instance skips", func() error {
			if st := statusOf(runners[2], "long"); st.Skipped != 1 || st.Runs != 0 || st.Running {
				return fmt.Errorf("late instance: %+v", st)
			}
			return nil
		})
		close(release)
		eventually(t, waitFor, "the run ends", func() error {
			if runs, _, _, running := sumStatus(runners, "long"); runs != 1 || running != 0 {
				return fmt.Errorf("%d runs, %d running", runs, running)
			}
			return nil
		})
		if n := calls.Load(); n != 1 {
			t.Fatalf("the run happened %d times", n)
		}
		// The next scheduled run happens once too.
		waitNext(t, "long", minute(2), runners...)
		for _, clk := range clocks {
			advanceTo(clk, minute(2))
		}
		eventually(t, waitFor, "the next run", func() error {
			if runs, skipped, _, running := sumStatus(runners, "long"); runs != 2 || skipped != 4 || running != 0 {
				return fmt.Errorf("%d runs, %d skipped, %d running", runs, skipped, running)
			}
			return nil
		})
		if n := calls.Load(); n != 2 {
			t.Fatalf("two scheduled runs called the generator %d times", n)
		}
	})
}

// TestScheduler_NoOverlapAcrossFleet: while one instance is still running
// a strategy, its next scheduled run starts nowhere: not on that instance
// (singleton mode) and not on the others (the running lock).
func TestScheduler_NoOverlapAcrossFleet(t *testing.T) {
	eachTopology(t, redisTopologies, func(t *testing.T, tp topology) {
		var calls atomic.Int32
		release := make(chan struct{})
		_, runners, clocks := fleetOf(t, tp, 3, SchedulerOptions{},
			Strategy{Name: "slow", Enabled: true, Schedule: "* * * * *", Generator: blocking(&calls, release)})
		advanceAll := func(k int) {
			waitNext(t, "slow", minute(k), runners...)
			for _, clk := range clocks {
				advanceTo(clk, minute(k))
			}
		}
		advanceAll(1)
		eventually(t, waitFor, "one run going", func() error {
			if _, skipped, _, running := sumStatus(runners, "slow"); running != 1 || skipped != 2 {
				return fmt.Errorf("running %d, skipped %d", running, skipped)
			}
			return nil
		})
		advanceAll(2)
		eventually(t, waitFor, "the second tick skipped everywhere", func() error {
			// The runner's instance skips it by singleton mode, one other
			// by the running lock, the third by the run's record.
			if runs, skipped, overlapped, running := sumStatus(runners, "slow"); overlapped != 2 || skipped != 3 || running != 1 || runs != 0 {
				return fmt.Errorf("overlapped %d, skipped %d, running %d, runs %d", overlapped, skipped, running, runs)
			}
			return nil
		})
		close(release)
		eventually(t, waitFor, "the first run ends", func() error {
			if runs, _, _, running := sumStatus(runners, "slow"); runs != 1 || running != 0 {
				return fmt.Errorf("%d runs, %d running", runs, running)
			}
			return nil
		})
		advanceAll(3)
		eventually(t, waitFor, "the third tick runs", func() error {
			if runs, _, _, running := sumStatus(runners, "slow"); runs != 2 || running != 0 {
				return fmt.Errorf("%d runs, %d running", runs, running)
			}
			return nil
		})
		if n := calls.Load(); n != 2 {
			t.Fatalf("%d generator calls, want 2", n)
		}
	})
}

func TestSchedule_RunAtAndEvery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr      string
		now       time.Time
		run, next time.Time
	}{
		{"* * * * *", minute(3), minute(3), minute(4)},
		{"* * * * *", minute(3).Add(17 * time.Second), minute(3), minute(4)},
		{"0 3 * * *", time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 3, 0, 0, 0, time.UTC), time.Date(2026, 3, 2, 3, 0, 0, 0, time.UTC)},
		{"@every 10m", time.Date(2026, 3, 1, 12, 34, 56, 0, time.UTC), time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC), time.Date(2026, 3, 1, 12, 40, 0, 0, time.UTC)},
		{"CRON_TZ=Europe/Paris @every 1h", time.Date(2026, 3, 1, 12, 34, 0, 0, time.UTC), time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC)},
		{"*/20 * * * * *", time.Date(2026, 3, 1, 12, 0, 45, 0, time.UTC), time.Date(2026, 3, 1, 12, 0, 40, 0, time.UTC), time.Date(2026, 3, 1, 12, 1, 0, 0, time.UTC)},
	} {
		var s schedule
		if err := s.IsValid(tc.expr, time.UTC, tc.now); err != nil {
			t.Fatalf("%s: %v", tc.expr, err)
		}
		if got := s.runAt(tc.now); !got.Equal(tc.run) {
			t.Errorf("%s: run at %v is the one of %v, want %v", tc.expr, tc.now, got, tc.run)
		}
		if got := s.Next(tc.now); !got.Equal(tc.next) {
			t.Errorf("%s: next after %v is %v, want %v", tc.expr, tc.now, got, tc.next)
		}
	}
}
