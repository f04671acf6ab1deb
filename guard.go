package tiercache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tiercache/tiercache/internal/l2"
)

// BreakerState is the state of the circuit breaker around L2.
type BreakerState string

// Breaker states.
const (
	BreakerClosed   BreakerState = "closed"    // L2 calls go through
	BreakerOpen     BreakerState = "open"      // L2 calls fail fast with ErrCircuitOpen
	BreakerHalfOpen BreakerState = "half-open" // a few probes test whether L2 is back
	BreakerDisabled BreakerState = "disabled"
)

// guarded wraps an l2.Store with the per-operation timeout, bounded
// retries with exponential backoff and jitter (idempotent operations
// only), and the circuit breaker. Only l2.ErrUnavailable errors count as
// failures.
type guarded struct {
	s       l2.Store
	timeout time.Duration
	retries int
	backoff time.Duration
	cb      *gobreaker.TwoStepCircuitBreaker[struct{}] // nil when disabled
	onState func(BreakerState)
	onOK    func() // after every operation L2 answered; may be nil
	// deadlines gives operations their timeout; nil without one.
	deadlines *sharedDeadlines
	obs       *observer // times, counts and traces each attempt
	log       breakerLog
	refused   atomic.Uint64 // calls the open breaker refused
}

func newGuarded(s l2.Store, o Options, onState func(BreakerState)) *guarded {
	g := &guarded{s: s, timeout: max(o.OperationTimeout, 0), retries: max(o.Retries, 0), backoff: o.RetryBackoff, onState: onState}
	g.log = breakerLog{logger: o.Logger, redact: func(err error) string { return redactErr(err, o.Redis) }}
	if g.timeout > 0 {
		g.deadlines = newSharedDeadlines(g.timeout)
	}
	if !o.Breaker.Disabled {
		threshold := o.Breaker.Threshold
		g.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        "tiercache-l2",
			MaxRequests: o.Breaker.HalfOpenProbes,
			Timeout:     o.Breaker.OpenTimeout,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
			IsSuccessful: func(err error) bool {
				return err == nil || !errors.Is(err, l2.ErrUnavailable)
			},
			IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
			OnStateChange: func(_ string, from, to gobreaker.State) {
				g.log.changed(breakerState(from), breakerState(to), o.Breaker.Threshold)
				if g.onState != nil {
					g.onState(breakerState(to))
				}
			},
		})
	}
	return g
}

func breakerState(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}

// openFor reports how long the breaker has been away from closed (open,
// or half-open between probes) at now; 0 while it is closed.
func (g *guarded) openFor(now time.Time) time.Duration {
	if at := g.log.openedAt.Load(); at != 0 {
		return max(now.Sub(time.Unix(0, at)), 0)
	}
	return 0
}

// state reports the breaker's state.
func (g *guarded) state() BreakerState {
	if g.cb == nil {
		return BreakerDisabled
	}
	return breakerState(g.cb.State())
}

// do runs op under the breaker, the timeout and, when idempotent, the
// retries.
func (g *guarded) do(ctx context.Context, name string, idempotent bool, op func(ctx context.Context) error) error {
	attempts := 1
	if idempotent {
		attempts += g.retries
	}
	var err error
	for i := range attempts {
		if i > 0 {
			// Exponential backoff with full jitter.
			d := g.backoff << (i - 1)
			d = time.Duration(rand.Int64N(int64(d)) + 1)
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return err
			case <-t.C:
			}
		}
		err = g.once(ctx, name, op)
		if err == nil || !errors.Is(err, l2.ErrUnavailable) || errors.Is(err, ErrCircuitOpen) {
			return err
		}
	}
	return err
}

func (g *guarded) once(ctx context.Context, name string, op func(ctx context.Context) error) error {
	if err := spentBudget(ctx); err != nil {
		// The read's budget is spent: no attempt, nothing for the breaker.
		return err
	}
	done := func(error) {}
	if g.cb != nil && ctx.Value(admittedKey{}) == nil {
		var err error
		if done, err = g.cb.Allow(); err != nil {
			g.obs.l2Rejected(name)
			g.log.failedFast.Add(1)
			g.refused.Add(1)
			return fmt.Errorf("%w: %w", ErrCircuitOpen, l2.ErrUnavailable)
		}
	}
	octx, cancel := ctx, context.CancelFunc(noCancel)
	if g.deadlines != nil && !endsWithin(ctx, g.timeout) {
		octx, cancel = g.deadlines.opContext(ctx)
	}
	octx, call := g.obs.l2Begin(octx, name)
	err := op(octx)
	timedOut := octx.Err() != nil
	cancel()
	if err != nil && ctx.Err() == nil && timedOut && !errors.Is(err, l2.ErrUnavailable) {
		// Our own timeout fired: the store did not answer in time.
		err = fmt.Errorf("%w: no answer within %v: %w", l2.ErrUnavailable, g.timeout, err)
	} else if b := spentBudget(ctx); err != nil && b != nil {
		// The read's budget ran out during the attempt.
		err = fmt.Errorf("%w: %w", b, err)
	}
	g.obs.l2End(call, name, err)
	if err != nil && errors.Is(err, l2.ErrUnavailable) {
		g.log.cause.Store(&err)
	}
	done(err)
	if err == nil && g.onOK != nil {
		g.onOK()
	}
	return err
}

func (g *guarded) Get(ctx context.Context, key string) (v []byte, err error) {
	err = g.do(ctx, "get", true, func(ctx context.Context) error {
		v, err = g.s.Get(ctx, key)
		return err
	})
	return v, err
}

func (g *guarded) MGet(ctx context.Context, keys []string) (v [][]byte, err error) {
	err = g.do(ctx, "mget", true, func(ctx context.Context) error {
		v, err = g.s.MGet(ctx, keys)
		return err
	})
	return v, err
}

func (g *guarded) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return g.do(ctx, "set", true, func(ctx context.Context) error { return g.s.Set(ctx, key, value, ttl) })
}

func (g *guarded) MSet(ctx context.Context, items []l2.Item) error {
	return g.do(ctx, "mset", true, func(ctx context.Context) error { return g.s.MSet(ctx, items) })
}

// MSetTracked is MSet that leaves the keys tracked (l2.Tracker); a store
// that is no Tracker writes with MSet and reports no key as tracked.
func (g *guarded) MSetTracked(ctx context.Context, items []l2.Item) (ok []bool, err error) {
	t, isTracker := g.s.(l2.Tracker)
	if !isTracker {
		if err := g.MSet(ctx, items); err != nil {
			return nil, err
		}
		return make([]bool, len(items)), nil
	}
	name := "mset"
	if len(items) == 1 {
		name = "set"
	}
	err = g.do(ctx, name, true, func(ctx context.Context) error {
		ok, err = t.MSetTracked(ctx, items)
		return err
	})
	return ok, err
}

func (g *guarded) Del(ctx context.Context, keys ...string) error {
	return g.do(ctx, "del", true, func(ctx context.Context) error { return g.s.Del(ctx, keys...) })
}

// Incr is not idempotent: it is never retried.
func (g *guarded) Incr(ctx context.Context, keys []string, by int64) (v []int64, err error) {
	err = g.do(ctx, "incr", false, func(ctx context.Context) error {
		v, err = g.s.Incr(ctx, keys, by)
		return err
	})
	return v, err
}

func (g *guarded) SetNX(ctx context.Context, items []l2.Item) error {
	return g.do(ctx, "setnx", true, func(ctx context.Context) error { return g.s.SetNX(ctx, items) })
}

func (g *guarded) TryLock(ctx context.Context, key, token string, ttl time.Duration) (ok bool, err error) {
	err = g.do(ctx, "lock", false, func(ctx context.Context) error {
		ok, err = g.s.TryLock(ctx, key, token, ttl)
		return err
	})
	return ok, err
}

func (g *guarded) Unlock(ctx context.Context, key, token string) (ok bool, err error) {
	err = g.do(ctx, "unlock", true, func(ctx context.Context) error {
		ok, err = g.s.Unlock(ctx, key, token)
		return err
	})
	return ok, err
}

func (g *guarded) Close() error { return g.s.Close() }

// endsWithin reports whether ctx has a deadline at most d from now: an
// operation under it then needs no timeout of its own.
func endsWithin(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) <= d
}
