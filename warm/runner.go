package warm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/tiercache/tiercache"
)

// Options configure a Runner.
type Options struct {
	// Cache is the cache strategies write to. It is required; the Runner
	// does not close it.
	Cache *tiercache.Cache

	// Logger receives one line per finished run: Info when it succeeded,
	// Warn when it failed. Nil means slog.Default().
	Logger *slog.Logger

	// OnResult, when set, is called with every finished run, on the
	// goroutine that ran it. Every run also goes to Cache.RecordWarm, and
	// so to the cache's metrics recorder (tiercache.Options.Recorder),
	// whose warming time is Result.Duration. Nil means no call.
	OnResult func(Result)

	// OnProgress, when set, is called after every batch, on the goroutine
	// that runs the strategy. Nil means no call.
	OnProgress func(Progress)

	// Clock paces the delays between batches, times runs and drives the
	// Scheduler. Nil means the real clock; tests pass a fake one.
	Clock clockwork.Clock
}

// Runner runs warming strategies. It is safe for concurrent use; a
// strategy never runs twice at once in one Runner. Create it with
// NewRunner and release it with Close.
type Runner struct {
	cache  *tiercache.Cache
	opts   Options
	clock  clockwork.Clock
	logger *slog.Logger
	order  []*state // priority order
	byName map[string]*state

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	mu     sync.Mutex // guards closed and wg.Add against Close
	closed bool
	wg     sync.WaitGroup
}

// state is one strategy and its runs.
type state struct {
	s Strategy

	mu         sync.Mutex
	running    bool
	runs       int64
	skipped    int64
	overlapped int64
	last       Result
	next       func() time.Time // set by a Scheduler; nil when unscheduled
}

// NewRunner checks the strategies (names, priorities, cron schedules...)
// and returns a Runner for them. Zero fields take the defaults documented
// on Strategy.
func NewRunner(opts Options, strategies ...Strategy) (*Runner, error) {
	if opts.Cache == nil {
		return nil, errors.New("warm: Options.Cache is nil")
	}
	r := &Runner{cache: opts.Cache, opts: opts, clock: opts.Clock, logger: opts.Logger, byName: map[string]*state{}}
	if r.clock == nil {
		r.clock = clockwork.NewRealClock()
	}
	if r.logger == nil {
		r.logger = slog.Default()
	}
	for _, s := range strategies {
		s = s.withDefaults()
		if err := s.validate(r.clock.Now()); err != nil {
			return nil, err
		}
		if _, dup := r.byName[s.Name]; dup {
			return nil, &StrategyError{Strategy: s.Name, Err: fmt.Errorf("%w: the name is used twice", ErrInvalidStrategy)}
		}
		st := &state{s: s}
		r.byName[s.Name] = st
		r.order = append(r.order, st)
	}
	slices.SortStableFunc(r.order, func(a, b *state) int { return cmp.Compare(a.s.Priority, b.s.Priority) })
	r.ctx, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Close cancels runs in progress, including those started by WarmAsync,
// and waits for them to return. Later calls return ErrClosed. Close is
// idempotent.
func (r *Runner) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// enter registers a run with Close, or reports ErrClosed.
func (r *Runner) enter() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.wg.Add(1)
	return nil
}

// Warm runs strategies on demand, in priority order, one at a time. With
// no names it runs every enabled strategy whose WarmOnDemand is true;
// otherwise the named ones, each of which must exist, be enabled and be
// WarmOnDemand, or nothing runs. It returns once they have run, with one
// Result each; the error joins the runs' errors.
func (r *Runner) Warm(ctx context.Context, names ...string) ([]Result, error) {
	sts, err := r.onDemand(names)
	if err != nil {
		return nil, err
	}
	return r.runAll(ctx, sts, TriggerDemand)
}

// WarmAsync is Warm in the background: it checks names as Warm does,
// starts the runs on the Runner's own context (Close cancels them) and
// returns at once with the strategies it will run, in order. Their
// results appear in Status and reach Options.OnResult.
func (r *Runner) WarmAsync(names ...string) ([]string, error) {
	sts, err := r.onDemand(names)
	if err != nil {
		return nil, err
	}
	if err := r.enter(); err != nil {
		return nil, err
	}
	go func() {
		defer r.wg.Done()
		_, _ = r.runAll(r.ctx, sts, TriggerDemand)
	}()
	out := make([]string, len(sts))
	for i, st := range sts {
		out[i] = st.s.Name
	}
	return out, nil
}

// Startup runs every enabled strategy whose WarmOnStartup is true, in
// priority order, and returns their results as Warm does.
func (r *Runner) Startup(ctx context.Context) ([]Result, error) {
	var sts []*state
	for _, st := range r.order {
		if st.s.Enabled && st.s.WarmOnStartup {
			sts = append(sts, st)
		}
	}
	return r.runAll(ctx, sts, TriggerStartup)
}

// onDemand resolves Warm's names.
func (r *Runner) onDemand(names []string) ([]*state, error) {
	if len(names) == 0 {
		var sts []*state
		for _, st := range r.order {
			if st.s.Enabled && st.s.WarmOnDemand {
				sts = append(sts, st)
			}
		}
		return sts, nil
	}
	want := map[string]bool{}
	for _, n := range names {
		st, ok := r.byName[n]
		switch {
		case !ok:
			return nil, fmt.Errorf("%w %q", ErrUnknownStrategy, n)
		case !st.s.Enabled:
			return nil, &StrategyError{Strategy: n, Err: fmt.Errorf("%w: it is disabled", ErrNotOnDemand)}
		case !st.s.WarmOnDemand:
			return nil, &StrategyError{Strategy: n, Err: fmt.Errorf("%w: its WarmOnDemand is false", ErrNotOnDemand)}
		}
		want[n] = true
	}
	var sts []*state
	for _, st := range r.order {
		if want[st.s.Name] {
			sts = append(sts, st)
		}
	}
	return sts, nil
}

func (r *Runner) runAll(ctx context.Context, sts []*state, trig Trigger) ([]Result, error) {
	results := make([]Result, 0, len(sts))
	var errs []error
	for _, st := range sts {
		res := r.run(ctx, st, trig, nil)
		results = append(results, res)
		if res.Err != nil {
			errs = append(errs, res.Err)
		}
	}
	return results, errors.Join(errs...)
}

// run runs one strategy unless it is already running here. finish, when
// not nil, is called once the run is over and before its result is
// recorded.
func (r *Runner) run(ctx context.Context, st *state, trig Trigger, finish func()) Result {
	res := Result{Strategy: st.s.Name, Trigger: trig, Started: r.clock.Now()}
	if err := r.enter(); err != nil {
		res.Err = &StrategyError{Strategy: st.s.Name, Err: err}
		return res
	}
	defer r.wg.Done()
	st.mu.Lock()
	if st.running {
		st.mu.Unlock()
		res.Err = &StrategyError{Strategy: st.s.Name, Err: ErrRunning}
		return res
	}
	st.running = true
	st.mu.Unlock()

	// The run ends when the caller's ctx or the Runner ends.
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(r.ctx, cancel)
	res = r.execute(ctx, st.s, res)
	stop()
	cancel()
	if finish != nil {
		finish()
	}

	st.mu.Lock()
	st.running = false
	st.runs++
	st.last = res
	st.mu.Unlock()
	r.report(res)
	return res
}

func (r *Runner) report(res Result) {
	attrs := []any{"strategy", res.Strategy, "trigger", string(res.Trigger), "written", res.Written,
		"failed", res.Failed, "batches", res.Batches, "duration", res.Duration}
	switch {
	case res.Err != nil:
		r.logger.Warn("warm: strategy failed", append(attrs, "err", res.Err)...)
	case res.KeyErr != nil:
		r.logger.Warn("warm: strategy finished with failed keys", append(attrs, "last_key_err", res.KeyErr)...)
	default:
		r.logger.Info("warm: strategy finished", attrs...)
	}
	// The cache's metrics recorder and Stats see every run.
	r.cache.RecordWarm(res.Strategy, int(res.Written), int(res.Failed), res.Duration, res.Err)
	if r.opts.OnResult != nil {
		r.opts.OnResult(res)
	}
}

// Status returns every strategy with its runs, in priority order.
func (r *Runner) Status() []Status {
	out := make([]Status, 0, len(r.order))
	for _, st := range r.order {
		s := st.s
		st.mu.Lock()
		ss := Status{
			Name: s.Name, Priority: s.Priority, Enabled: s.Enabled, Schedule: s.Schedule,
			WarmOnStartup: s.WarmOnStartup, WarmOnDemand: s.WarmOnDemand,
			BatchSize: s.BatchSize, TTL: s.TTL, Tags: slices.Clone(s.Tags),
			Running: st.running, Runs: st.runs, Skipped: st.skipped, Overlapped: st.overlapped, Last: st.last,
		}
		next := st.next
		st.mu.Unlock()
		if next != nil {
			ss.NextRun = next()
		}
		out = append(out, ss)
	}
	return out
}
