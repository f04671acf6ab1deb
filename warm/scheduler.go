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

// Defaults applied to zero-valued SchedulerOptions fields.
const (
	DefaultLockTTL = 10 * time.Minute
	DefaultMinHold = 10 * time.Second
)

// releaseTimeout bounds the release of a fleet lock.
const releaseTimeout = 5 * time.Second

// SchedulerOptions configure a Scheduler.
type SchedulerOptions struct {
	// Location is the time zone of cron expressions without a CRON_TZ
	// prefix. Nil means time.Local.
	Location *time.Location

	// LockTTL bounds how long a scheduled run holds its fleet-wide lock:
	// an instance that dies mid-run blocks the others for at most this
	// long, and a run that takes longer loses its exclusivity. Zero means
	// DefaultLockTTL (10 minutes).
	LockTTL time.Duration

	// MinHold is the shortest time a run keeps its lock, even when it
	// finishes sooner, so that an instance whose clock is behind by less
	// than this finds the lock still taken and does not run the same
	// scheduled run again. It must be shorter than the interval between
	// two runs of a strategy. Zero means DefaultMinHold (10 seconds).
	MinHold time.Duration

	// Logger receives the scheduler's own messages (a lock that could not
	// be taken because L2 failed). Nil means the Runner's logger.
	Logger *slog.Logger
}

// Scheduler runs a Runner's strategies on their cron schedules, on one
// instance of the fleet per scheduled run. It uses gocron in singleton
// mode, so a strategy whose run outlasts its interval skips the runs that
// would overlap it.
//
// Fleet-wide exclusivity: before a scheduled run, each instance tries the
// lock "warm:<strategy>" with Cache.TryLock; instances share it when they
// share the cache's namespace and L2. The one that takes it runs, the
// others count the run as Skipped. The lock is kept for at least MinHold
// to absorb clock skew between instances, then released. Like every
// tiercache lock it serves efficiency, not correctness: a Redis failover
// can lose it, and a strategy may then run twice.
type Scheduler struct {
	runner  *Runner
	clock   clockwork.Clock
	logger  *slog.Logger
	lockTTL time.Duration
	minHold time.Duration
	cron    gocron.Scheduler
	byLock  map[string]*state // lock name -> strategy

	ctx    context.Context // cancelled by Close: scheduled runs stop
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	pending  map[*heldLock]clockwork.Timer // locks whose release waits for MinHold
	releases sync.WaitGroup
}

// NewScheduler registers every enabled strategy of r that has a Schedule.
// It fails when a schedule is invalid. Call Start to begin.
func NewScheduler(r *Runner, opts SchedulerOptions) (*Scheduler, error) {
	s := &Scheduler{
		runner: r, clock: r.clock, logger: opts.Logger, lockTTL: opts.LockTTL, minHold: opts.MinHold,
		byLock: map[string]*state{}, pending: map[*heldLock]clockwork.Timer{},
	}
	if s.logger == nil {
		s.logger = r.logger
	}
	if s.lockTTL == 0 {
		s.lockTTL = DefaultLockTTL
	}
	if s.minHold == 0 {
		s.minHold = DefaultMinHold
	}
	switch {
	case s.lockTTL < 0:
		return nil, fmt.Errorf("warm: LockTTL %v is negative", s.lockTTL)
	case s.minHold < 0 || s.minHold > s.lockTTL:
		return nil, fmt.Errorf("warm: MinHold %v must be between 0 and LockTTL (%v)", s.minHold, s.lockTTL)
	}
	gopts := []gocron.SchedulerOption{
		gocron.WithClock(s.clock),
		gocron.WithDistributedLocker(fleetLocker{s}),
		gocron.WithLogger(s.logger),
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

func lockName(strategy string) string { return "warm:" + strategy }

func (s *Scheduler) register(st *state) error {
	name := lockName(st.s.Name)
	job, err := s.cron.NewJob(
		gocron.CronJob(st.s.Schedule, true),
		gocron.NewTask(func() { s.runner.run(s.ctx, st, TriggerSchedule) }),
		gocron.WithName(name),
		gocron.WithSingletonMode(gocron.LimitModeReschedule),
	)
	if err != nil {
		return &StrategyError{Strategy: st.s.Name, Err: fmt.Errorf("%w: schedule %q: %v", ErrInvalidStrategy, st.s.Schedule, err)}
	}
	s.byLock[name] = st
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
// them, and releases the fleet locks this instance still holds. It does
// not close the Runner. Close is idempotent.
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
	for _, st := range s.byLock {
		st.mu.Lock()
		st.next = nil
		st.mu.Unlock()
	}
	// Locks still within MinHold are released now: on shutdown the skew
	// they guard against matters less than blocking the fleet for LockTTL.
	s.mu.Lock()
	early := make([]*heldLock, 0, len(s.pending))
	for h, t := range s.pending {
		// A timer that already fired releases its lock by itself.
		if t.Stop() {
			early = append(early, h)
			delete(s.pending, h)
		}
	}
	s.mu.Unlock()
	for _, h := range early {
		h.release()
		s.releases.Done()
	}
	s.releases.Wait()
	if err != nil {
		return fmt.Errorf("warm: scheduler shutdown: %w", err)
	}
	return nil
}

// fleetLocker is gocron's Locker on Cache.TryLock.
type fleetLocker struct{ s *Scheduler }

// Lock implements gocron.Locker. An error tells gocron to skip this run.
func (l fleetLocker) Lock(ctx context.Context, key string) (gocron.Lock, error) {
	s := l.s
	lk, err := s.runner.cache.TryLock(ctx, key, s.lockTTL)
	if err != nil {
		if st := s.byLock[key]; st != nil && errors.Is(err, tiercache.ErrLocked) {
			st.mu.Lock()
			st.skipped++
			st.mu.Unlock()
		} else {
			s.logger.Warn("warm: scheduled run skipped: the fleet lock failed", "lock", key, "err", err)
		}
		return nil, err
	}
	return &heldLock{s: s, lk: lk, at: s.clock.Now()}, nil
}

// heldLock is a fleet lock taken for one scheduled run.
type heldLock struct {
	s  *Scheduler
	lk *tiercache.Lock
	at time.Time
}

// Unlock implements gocron.Lock: it releases the lock once MinHold has
// passed since it was taken.
func (h *heldLock) Unlock(context.Context) error {
	s := h.s
	rest := s.minHold - s.clock.Since(h.at)
	s.mu.Lock()
	if rest <= 0 || s.closed {
		s.mu.Unlock()
		h.release()
		return nil
	}
	s.releases.Add(1)
	s.pending[h] = s.clock.AfterFunc(rest, func() {
		defer s.releases.Done()
		s.mu.Lock()
		_, mine := s.pending[h]
		delete(s.pending, h)
		s.mu.Unlock()
		if mine {
			h.release()
		}
	})
	s.mu.Unlock()
	return nil
}

// release runs on its own context: gocron's may be cancelled by then.
func (h *heldLock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	if err := h.lk.Unlock(ctx); err != nil {
		h.s.logger.Warn("warm: releasing a fleet lock failed; it expires by itself", "err", err)
	}
}

// overlapMonitor counts the scheduled runs gocron's singleton mode skipped
// because the previous run was still going. The other events are not
// needed: Runner keeps its own results.
type overlapMonitor struct{ s *Scheduler }

func (m overlapMonitor) ConcurrencyLimitReached(limitType string, job gocron.Job) {
	if st := m.s.byLock[job.Name()]; st != nil && limitType == "singleton" {
		st.mu.Lock()
		st.overlapped++
		st.mu.Unlock()
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
