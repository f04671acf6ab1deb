package tiercache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// frozenRead is one read made while Redis was frozen.
type frozenRead struct {
	what  string
	took  time.Duration
	stale bool
	err   error
}

// readFrozen starts a redis-server of its own, fills one key ("held") into
// a cache's L1 with mod's options and fail-safe on, freezes the server with
// SIGSTOP, waits until the liveness probe has ended the L1's freshness,
// and makes reads of every kind: the held key first (the first read since
// the freeze), then keys never read, then the held key again. It returns every
// read with its latency, in order.
func readFrozen(t *testing.T, mod func(*Options)) []frozenRead {
	t.Helper()
	srv := redistest.NewStandalone(t)
	c := newCache(t, "memory", func(o *Options) {
		o.Redis = RedisOptions{Addrs: []string{srv.Addr}}
		o.Logger = slog.New(slog.DiscardHandler)
		o.FailSafe = FailSafeOptions{MaxDuration: time.Hour}
		mod(o)
	})
	ctx := context.Background()
	if err := c.Set(ctx, "held", 7); err != nil {
		t.Fatal(err)
	}
	var v int
	eventually(t, 5*time.Second, "an L1 hit", func() error {
		if r, err := c.Lookup(ctx, "held", &v); err != nil || r.Source != SourceL1 {
			return fmt.Errorf("%+v %v", r, err)
		}
		return nil
	})
	suspects := c.Counters().LinkSuspects
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	// The liveness probe notices the frozen server and ends the L1's
	// freshness: from then on, reading the held key needs Redis.
	eventually(t, 5*time.Second, "a missed liveness probe", func() error {
		if c.Counters().LinkSuspects == suspects {
			return errors.New("none yet")
		}
		return nil
	})
	var out []frozenRead
	timed := func(what string, fn func() (bool, error)) {
		start := time.Now()
		stale, err := fn()
		out = append(out, frozenRead{what: what, took: time.Since(start), stale: stale, err: err})
	}
	lookupHeld := func(n int) {
		timed(fmt.Sprintf("Lookup held #%d", n), func() (bool, error) {
			r, err := c.Lookup(ctx, "held", &v)
			if err == nil && v != 7 {
				err = fmt.Errorf("held is %d, want 7", v)
			}
			return r.Stale, err
		})
	}
	lookupHeld(1)
	for i := range 3 {
		timed(fmt.Sprintf("Get new%d", i), func() (bool, error) { return false, c.Get(ctx, fmt.Sprintf("new%d", i), &v) })
	}
	timed("Lookup new3", func() (bool, error) { r, err := c.Lookup(ctx, "new3", &v); return r.Stale, err })
	timed("GetMany new4,new5", func() (bool, error) {
		m := map[string]int{}
		return false, c.GetMany(ctx, []string{"new4", "new5"}, m)
	})
	timed("Fetch new6", func() (bool, error) {
		_, r, err := FetchResult(ctx, c, "new6", func(context.Context, string) (int, error) { return 6, nil })
		return r.Stale, err
	})
	timed("FetchMany new7,new8", func() (bool, error) {
		m, err := FetchMany(ctx, c, []string{"new7", "new8"}, func(_ context.Context, keys []string) (map[string]int, error) {
			return map[string]int{"new7": 7, "new8": 8}, nil
		})
		if err == nil && len(m) != 2 {
			err = fmt.Errorf("FetchMany returned %v", m)
		}
		return false, err
	})
	lookupHeld(2)
	lookupHeld(3)
	return out
}

func logReads(t *testing.T, reads []frozenRead) {
	t.Helper()
	var b strings.Builder
	for _, r := range reads {
		fmt.Fprintf(&b, "\n\t%-20s %8v stale=%-5v err=%v", r.what, r.took.Round(time.Millisecond), r.stale, r.err)
	}
	t.Log("reads while Redis was frozen:", b.String())
}

// TestReadTimeout_FrozenRedis: with Redis frozen (SIGSTOP), every read
// answers within ReadTimeout plus scheduling noise, the very first one
// included; reads of keys never held fail as unavailable, and a key held
// in L1 answers stale.
func TestReadTimeout_FrozenRedis(t *testing.T) {
	const budget = 500 * time.Millisecond // serve's default
	margin := 150 * time.Millisecond
	if raceEnabled {
		margin = 300 * time.Millisecond
	}
	reads := readFrozen(t, func(o *Options) { o.ReadTimeout = budget })
	logReads(t, reads)
	for _, r := range reads {
		if r.took > budget+margin {
			t.Errorf("%s took %v, want at most the budget %v + %v", r.what, r.took, budget, margin)
		}
		switch {
		case strings.HasPrefix(r.what, "Lookup held"):
			if r.err != nil || !r.stale {
				t.Errorf("%s: stale=%v err=%v, want the held value flagged stale", r.what, r.stale, r.err)
			}
		case strings.HasPrefix(r.what, "Fetch"): // Fetch and FetchMany
			if r.err != nil {
				t.Errorf("%s: %v, want the loader's value", r.what, r.err)
			}
		case !errors.Is(r.err, ErrUnavailable):
			t.Errorf("%s: %v, want an error matching ErrUnavailable", r.what, r.err)
		}
	}
	var be *budgetError
	if !errors.As(reads[1].err, &be) || !strings.Contains(reads[1].err.Error(), "read budget of 500ms") {
		t.Errorf("the first read of a new key: error %v does not say that the read budget was spent", reads[1].err)
	}
}

// TestReadTimeout_BreakerClosed: with a breaker that does not open during
// the test, every read spends its budget against the frozen Redis instead
// of failing fast: each answers within it, and Fetch and FetchMany, which
// also try to cache what their loader returned, within two budgets (the
// write has one of its own).
func TestReadTimeout_BreakerClosed(t *testing.T) {
	const budget = 300 * time.Millisecond
	margin := 150 * time.Millisecond
	if raceEnabled {
		margin = 400 * time.Millisecond
	}
	reads := readFrozen(t, func(o *Options) {
		o.ReadTimeout = budget
		o.Breaker.Threshold = 1000
	})
	logReads(t, reads)
	for _, r := range reads {
		limit := budget + margin
		if strings.HasPrefix(r.what, "Fetch") {
			limit = 2*budget + margin
		}
		if r.took > limit {
			t.Errorf("%s took %v, want at most %v", r.what, r.took, limit)
		}
		if r.took < budget-10*time.Millisecond {
			t.Errorf("%s took %v: it did not wait for Redis, so the budget was not tested", r.what, r.took)
		}
		if strings.HasPrefix(r.what, "Lookup held") && (r.err != nil || !r.stale) {
			t.Errorf("%s: stale=%v err=%v, want the held value flagged stale", r.what, r.stale, r.err)
		}
		if strings.HasPrefix(r.what, "Fetch") && r.err != nil {
			t.Errorf("%s: %v, want the loader's values", r.what, r.err)
		}
	}
}

// TestReadTimeout_ZeroKeepsAttempts: without a budget (the default), the
// first read of a frozen Redis takes every attempt's OperationTimeout (1 s,
// 3 attempts), as documented.
func TestReadTimeout_ZeroKeepsAttempts(t *testing.T) {
	reads := readFrozen(t, func(*Options) {})
	logReads(t, reads)
	if first := reads[0].took; first < 3*DefaultOperationTimeout {
		t.Errorf("the first read took %v, want about OperationTimeout x 3 attempts (3s) without a budget", first)
	}
	for _, r := range reads {
		if strings.HasPrefix(r.what, "Lookup held") && (r.err != nil || !r.stale) {
			t.Errorf("%s: stale=%v err=%v, want the held value flagged stale", r.what, r.stale, r.err)
		}
	}
}

// TestReadTimeout_Invalid: a negative budget is refused.
func TestReadTimeout_Invalid(t *testing.T) {
	if _, err := New(Options{ReadTimeout: -time.Second}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("New with a negative ReadTimeout: %v, want ErrInvalidOptions", err)
	}
}
