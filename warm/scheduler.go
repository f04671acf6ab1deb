package warm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/jonboulle/clockwork"

	"github.com/tiercache/tiercache"
)

// DefaultLockTTL is the LockTTL of a zero SchedulerOptions.
const DefaultLockTTL = 10 * time.Minute

// releaseTimeout bounds the release of a fleet lock.
const releaseTimeout = 5 * time.Second

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	// Location is the time zone of cron expressions without a CRON_TZ
	// prefix. Nil means time.Local.
	Location *time.Location

	// LockTTL bounds how long a scheduled run keeps other instances from
	// starting the strategy's next runs while it goes on: an instance that
	// dies mid-run blocks the others for at most this long. It also says
	// how long after the next scheduled run the record of a run is kept,
	// which bounds the clock skew between instances that the fleet
	// tolerates. A run longer than LockTTL never runs twice; its next
	// scheduled run may then start on another instance while it goes on.
	// Zero means DefaultLockTTL (10 minutes).
	LockTTL time.Duration

	// Logger receives the scheduler's own messages (a lock that could not
	// be taken because L2 failed). Nil means the Runner's logger.
	Logger *slog.Logger
}

// Scheduler runs a Runner's strategies on their cron schedules, on one
// instance of the fleet per scheduled run. It uses gocron in singleton
// mode, so a strategy whose run outlasts its interval skips the runs that
// would overlap it.
//
// Fleet-wide exclusivity: instances share two fleet locks per strategy
// (Cache.TryLock) when they share the cache's namespace and L2. Before a
// scheduled run, each instance takes the record of that run,
// "warm:<strategy>@<scheduled time>": the first one to take it runs, the
// others count the run as Skipped. The record is never released; it
// expires LockTTL after the strategy's next scheduled run, so that an
// instance whose clock is behind, or that fires late, still finds it,
// however long the run took. The winner then takes "warm:<strategy>",
// held while it runs (at most LockTTL): when another instance is still
// running the strategy, the run is counted as Overlapped and skipped, as
// gocron's singleton mode does on one instance. Like every tiercache lock
// these serve efficiency, not correctness: a Redis failover can lose
// them, and a strategy may then run twice.
//
// "@every <d>" schedules fire on multiples of d (counted from the zero
// time.Time, in UTC), not d after each instance started, so that every
// instance of a fleet agrees on the scheduled times.
type Scheduler struct {
	runner  *Runner
	clock   clockwork.Clock
	logger  *slog.Logger
	lockTTL time.Duration
	cron    gocron.Scheduler
	byLock  map[string]*scheduled // job name -> strategy

	ctx    context.Context // cancelled by Close: scheduled runs stop
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
}

// scheduled is a strategy registered with the Scheduler.
type scheduled struct {
	st    *state
	sched *schedule

	mu   sync.Mutex
	held *heldLock // the running lock of the run in progress
}

// release releases the running lock of the run in progress, if any: the
// run is over, so the fleet may start the next one.
func (sc *scheduled) release() {
	sc.mu.Lock()
	h := sc.held
	sc.held = nil
	sc.mu.Unlock()
	if h != nil {
		h.release()
	}
}

// NewScheduler registers every enabled strategy of r that has a Schedule.
// It fails when a schedule is invalid. Call Start to begin.
func NewScheduler(r *Runner, opts SchedulerOptions) (*Scheduler, error) {
	s := &Scheduler{
		runner: r, clock: r.clock, logger: opts.Logger, lockTTL: opts.LockTTL,
		byLock: map[string]*scheduled{},
	}
	if s.logger == nil {
		s.logger = r.logger
	}
	if s.lockTTL == 0 {
		s.lockTTL = DefaultLockTTL
	}
	if s.lockTTL < 0 {
		return nil, fmt.Errorf("warm: LockTTL %v is negative", s.lockTTL)
	}
	gopts := []gocron.SchedulerOption{
		gocron.WithClock(s.clock),
		gocron.WithDistributedLocker(fleetLocker{s}),
		gocron.WithLogger(cronLogger{s.logger}),
		gocron.WithSchedulerMonitor(overlapMonitor{s}),
	}
	if opts.Location != nil {
		gopts = append(gopts, gocron.WithLocation(opts.Location))
	}
	var err error
	if s.cron, err = gocron.NewScheduler(gopts...); err != nil {
		return nil, fmt.Errorf("warm: scheduler: %w", err)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, st := range r.order {
		if !st.s.Enabled || st.s.Schedule == "" {
			continue
		}
		if err := s.register(st); err != nil {
			s.cancel()
			_ = s.cron.Shutdown()
			return nil, err
		}
	}
	return s, nil
}

// lockName is the lock a strategy's run holds while it goes on.
func lockName(strategy string) string { return "warm:" + strategy }

// runLockName is the record of the run of strategy scheduled at at.
func runLockName(strategy string, at time.Time) string {
	return "warm:" + strategy + "@" + at.UTC().Format(time.RFC3339)
}

func (s *Scheduler) register(st *state) error {
	name := lockName(st.s.Name)
	sc := &scheduled{st: st, sched: &schedule{}}
	job, err := s.cron.NewJob(
		gocron.CronJob(st.s.Schedule, true),
		// The running lock goes before the run is reported finished.
		gocron.NewTask(func() { s.runner.run(s.ctx, st, TriggerSchedule, sc.release) }),
		gocron.WithName(name),
		gocron.WithSingletonMode(gocron.LimitModeReschedule),
		gocron.WithCronImplementation(sc.sched),
	)
	if err != nil {
		return &StrategyError{Strategy: st.s.Name, Err: fmt.Errorf("%w: schedule %q: %v", ErrInvalidStrategy, st.s.Schedule, err)}
	}
	s.byLock[name] = sc
	st.mu.Lock()
	st.next = func() time.Time {
		// gocron keeps a run skipped for the lock or singleton mode in
		// its list until a run completes: report the first one ahead.
		ts, err := job.NextRuns(3)
		if err != nil {
			return time.Time{}
		}
		now := s.clock.Now()
		for _, t := range ts {
			if t.After(now) {
				return t
			}
		}
		return time.Time{}
	}
	st.mu.Unlock()
	return nil
}

// Start begins running scheduled strategies. It does not run WarmOnStartup
// strategies: call Runner.Startup for those.
func (s *Scheduler) Start() { s.cron.Start() }

// Close stops scheduling, cancels scheduled runs in progress, waits for
// them, and releases the locks they held. It does not close the Runner.
// Close is idempotent.
func (s *Scheduler) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	err := s.cron.Shutdown()
	for _, sc := range s.byLock {
		sc.st.mu.Lock()
		sc.st.next = nil
		sc.st.mu.Unlock()
	}
	if err != nil {
		return fmt.Errorf("warm: scheduler shutdown: %w", err)
	}
	return nil
}

// fleetLocker is gocron's Locker on Cache.TryLock.
type fleetLocker struct{ s *Scheduler }

// Lock implements gocron.Locker: it takes the record of the run due now,
// then the strategy's running lock. An error tells gocron to skip this
// run.
func (l fleetLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	s := l.s
	sc := s.byLock[key]
	if sc == nil {
		return nil, fmt.Errorf("warm: no strategy for job %q", key)
	}
	at := sc.sched.runAt(s.clock.Now())
	keep := sc.sched.Next(at).Sub(at) + s.lockTTL
	if _, err := s.runner.cache.TryLock(ctx, runLockName(sc.st.s.Name, at), keep); err != nil {
		s.count(sc.st, key, err, &sc.st.skipped)
		return nil, err
	}
	lk, err := s.runner.cache.TryLock(ctx, key, s.lockTTL)
	if err != nil {
		s.count(sc.st, key, err, &sc.st.overlapped)
		return nil, err
	}
	h := &heldLock{s: s, lk: lk}
	sc.mu.Lock()
	sc.held = h
	sc.mu.Unlock()
	return h, nil
}

// count records a run skipped for a lock another instance holds, or logs
// a lock that failed.
func (s *Scheduler) count(st *state, lock string, err error, n *int64) {
	if errors.Is(err, tiercache.ErrLocked) {
		st.mu.Lock()
		*n++
		st.mu.Unlock()
		return
	}
	s.logger.Warn("warm: scheduled run skipped: the fleet lock failed", "lock", lock, "err", err)
}

// heldLock is the running lock of one scheduled run.
type heldLock struct {
	s    *Scheduler
	lk   *tiercache.Lock
	once sync.Once
}

// Unlock implements gocron.Lock; the run has normally released the lock
// already, when it finished.
func (h *heldLock) Unlock(context.Context) error {
	h.release()
	return nil
}

// release runs on its own context: gocron's may be cancelled by then.
func (h *heldLock) release() {
	h.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		if err := h.lk.Unlock(ctx); err != nil {
			h.s.logger.Warn("warm: releasing a fleet lock failed; it expires by itself", "err", err)
		}
	})
}

// overlapMonitor counts the scheduled runs gocron's singleton mode skipped
// because the previous run was still going. The other events are not
// needed: Runner keeps its own results.
type overlapMonitor struct{ s *Scheduler }

func (m overlapMonitor) ConcurrencyLimitReached(limitType string, job gocron.Job) {
	if sc := m.s.byLock[job.Name()]; sc != nil && limitType == "singleton" {
		sc.st.mu.Lock()
		sc.st.overlapped++
		sc.st.mu.Unlock()
	}
}

func (overlapMonitor) SchedulerStarted()                                   {}
func (overlapMonitor) SchedulerStopped()                                   {}
func (overlapMonitor) SchedulerShutdown()                                  {}
func (overlapMonitor) JobRegistered(gocron.Job)                            {}
func (overlapMonitor) JobUnregistered(gocron.Job)                          {}
func (overlapMonitor) JobStarted(gocron.Job)                               {}
func (overlapMonitor) JobRunning(gocron.Job)                               {}
func (overlapMonitor) JobFailed(gocron.Job, error)                         {}
func (overlapMonitor) JobCompleted(gocron.Job)                             {}
func (overlapMonitor) JobExecutionTime(gocron.Job, time.Duration)          {}
func (overlapMonitor) JobSchedulingDelay(gocron.Job, time.Time, time.Time) {}

// cronLogger passes gocron's messages to the scheduler's logger, with its
// life-cycle notes ("scheduler started") at Debug rather than Info: the
// service logs its own start.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Debug(msg string, args ...any) { c.l.Debug(msg, args...) }
func (c cronLogger) Info(msg string, args ...any)  { c.l.Debug(msg, args...) }
func (c cronLogger) Warn(msg string, args ...any)  { c.l.Warn(msg, args...) }
func (c cronLogger) Error(msg string, args ...any) { c.l.Error(msg, args...) }
