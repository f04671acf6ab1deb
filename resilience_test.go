package tiercache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestFault_Breaker: the breaker opens after Threshold consecutive
// unreachable operations, then fails fast; reads fall back to stale L1
// values and Fetch to its loader; a half-open probe closes it again.
func TestFault_Breaker(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	c, px, _ := behindProxy(t, func(o *Options) {
		o.Retries = -1
		o.Breaker = BreakerOptions{Threshold: 3, OpenTimeout: 300 * time.Millisecond}
		o.FailSafe = FailSafeOptions{MaxDuration: time.Hour}
	})
	if err := c.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	if v, err := getInt(c, "k"); err != nil || v != 1 { // now in L1
		t.Fatal(v, err)
	}
	resets := c.Counters().LinkResets
	if err := px.Disable(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "link loss", func() error {
		if c.Counters().LinkResets == resets {
			return errors.New("not noticed")
		}
		return nil
	})
	for i := range 3 {
		if _, err := getInt(c, fmt.Sprint("cold", i)); !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("failure %d: %v, want ErrUnavailable from L2", i, err)
		}
	}
	if c.BreakerState() != BreakerOpen || c.Counters().Breaker != BreakerOpen {
		t.Fatalf("after 3 failures: %s / %s, want open", c.BreakerState(), c.Counters().Breaker)
	}
	start := time.Now()
	refused := c.Counters().BreakerRefused
	if _, err := getInt(c, "cold"); !errors.Is(err, ErrCircuitOpen) || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("while open: %v after %v, want ErrCircuitOpen at once", err, time.Since(start))
	}
	if n := c.Counters().BreakerRefused; n != refused+1 {
		t.Fatalf("BreakerRefused %d after a refused read, want %d", n, refused+1)
	}
	var v int
	if res, err := c.Lookup(ctx, "k", &v); err != nil || v != 1 || !res.Stale || res.Source != SourceStale {
		t.Fatalf("while open, Get of an L1 entry: %d %+v %v, want 1 flagged stale", v, res, err)
	}
	n, res, err := FetchResult(ctx, c, "loaded", func(context.Context, string) (int, error) { return 7, nil })
	if err != nil || n != 7 || res.Source != SourceLoader {
		t.Fatalf("while open, Fetch: %d %+v %v, want the loader's 7", n, res, err)
	}
	eventually(t, 5*time.Second, "half-open", func() error {
		if s := c.BreakerState(); s != BreakerHalfOpen {
			return fmt.Errorf("state %s", s)
		}
		return nil
	})
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "fresh read after recovery", func() error {
		var v int
		res, err := c.Lookup(ctx, "k", &v)
		if err != nil || res.Stale || v != 1 {
			return fmt.Errorf("%d %+v %v", v, res, err)
		}
		return nil
	})
	if s := c.BreakerState(); s != BreakerClosed {
		t.Fatalf("after a successful probe: %s, want closed", s)
	}
}

// TestFault_BreakerFromEnv: the CIRCUIT_BREAKER_* variables configure the
// breaker of a cache built from OptionsFromEnv.
func TestFault_BreakerFromEnv(t *testing.T) {
	redistest.Require(t)
	srv := redistest.NewStandalone(t)
	px := redistest.NewProxy(t, srv.Addr)
	for _, enabled := range []bool{true, false} {
		t.Run(fmt.Sprintf("enabled=%v", enabled), func(t *testing.T) {
			t.Setenv("REDIS_URL", "redis://"+px.Addr)
			t.Setenv("CIRCUIT_BREAKER_ENABLED", strconv.FormatBool(enabled))
			t.Setenv("CIRCUIT_BREAKER_THRESHOLD", "2")
			t.Setenv("CIRCUIT_BREAKER_TIMEOUT", "0.3")
			o, err := OptionsFromEnv()
			if err != nil {
				t.Fatal(err)
			}
			o.Namespace, o.Logger, o.Retries = testNamespace(t), slog.New(slog.DiscardHandler), -1
			c, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := px.Disable(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = px.Enable() }()
			var errs []error
			for i := range 4 {
				_, err := getInt(c, fmt.Sprint("k", i))
				errs = append(errs, err)
			}
			open := errors.Is(errs[2], ErrCircuitOpen) && !errors.Is(errs[1], ErrCircuitOpen)
			if open != enabled {
				t.Fatalf("breaker enabled=%v, errors %v", enabled, errs)
			}
			if want := map[bool]BreakerState{true: BreakerOpen, false: BreakerDisabled}[enabled]; c.BreakerState() != want {
				t.Fatalf("state %s, want %s", c.BreakerState(), want)
			}
		})
	}
}

// TestFault_RetryAfterReset: a connection reset in the middle of a SET is
// retried into a success; without retries it is queued. Redis holds the SET
// (CLIENT PAUSE WRITE), so the reset surely hits it in flight.
func TestFault_RetryAfterReset(t *testing.T) {
	redistest.Require(t)
	for _, retries := range []int{2, -1} {
		t.Run(fmt.Sprintf("retries=%d", retries), func(t *testing.T) {
			ctx := context.Background()
			c, px, srv := behindProxy(t, func(o *Options) {
				o.Retries = retries
				o.OperationTimeout = 5 * time.Second
			})
			if err := c.Set(ctx, "k", 0); err != nil { // creates the namespace counter
				t.Fatal(err)
			}
			if _, err := srv.Do("CLIENT", "PAUSE", "10000", "WRITE"); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- c.Set(ctx, "k", 1) }()
			eventually(t, 5*time.Second, "SET held by Redis", func() error {
				info, err := srv.Info("clients")
				if err != nil || info["blocked_clients"] != "1" {
					return fmt.Errorf("blocked_clients:%s %v", info["blocked_clients"], err)
				}
				return nil
			})
			if err := px.ResetPeer(); err != nil {
				t.Fatal(err)
			}
			if _, err := srv.Do("CLIENT", "UNPAUSE"); err != nil {
				t.Fatal(err)
			}
			err := <-done
			if retries > 0 && err != nil {
				t.Fatalf("with retries: %v, want success", err)
			}
			if retries < 0 && !errors.Is(err, ErrQueued) {
				t.Fatalf("without retries: %v, want ErrQueued", err)
			}
			eventually(t, 10*time.Second, "value written", func() error {
				if c.QueueLength() > 0 {
					return errors.New("queue not replayed")
				}
				if v, err := getInt(c, "k"); err != nil || v != 1 {
					return fmt.Errorf("%d %v", v, err)
				}
				return nil
			})
		})
	}
}

// TestFault_FailSafe: after a loader error the last value is served,
// flagged stale, and the loader is not tried again for FailSafe.Throttle.
func TestFault_FailSafe(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	c := newCache(t, "memory", func(o *Options) {
		o.Now, o.Logger = clk.Now, slog.New(slog.DiscardHandler)
		o.FailSafe = FailSafeOptions{MaxDuration: time.Hour, Throttle: 10 * time.Second}
	})
	var calls atomic.Int32
	var fail atomic.Bool
	load := func(context.Context, string) (int, error) {
		n := calls.Add(1)
		if fail.Load() {
			return 0, errors.New("database down")
		}
		return int(n), nil
	}
	fetch := func(wantV, wantCalls int, wantStale bool) {
		t.Helper()
		v, res, err := FetchResult(ctx, c, "k", load, WithTTL(time.Minute))
		if err != nil || v != wantV || res.Stale != wantStale || (res.Source == SourceStale) != wantStale {
			t.Fatalf("got %d %+v %v, want %d stale=%v", v, res, err, wantV, wantStale)
		}
		if n := int(calls.Load()); n != wantCalls {
			t.Fatalf("loader called %d times, want %d", n, wantCalls)
		}
	}
	fetch(1, 1, false)
	clk.Advance(2 * time.Minute) // expired, within the fail-safe window
	fail.Store(true)
	fetch(1, 2, true) // the loader fails: the old value, flagged
	fetch(1, 2, true) // throttled: the loader is not called
	clk.Advance(9 * time.Second)
	fetch(1, 2, true)
	clk.Advance(2 * time.Second) // past the throttle: the loader is tried again
	fetch(1, 3, true)
	fail.Store(false)
	clk.Advance(11 * time.Second)
	fetch(4, 4, false)
	if s := c.Counters().StaleServed; s != 4 {
		t.Fatalf("StaleServed = %d, want 4 (two after failed loads, two within the throttle)", s)
	}
}

// TestFault_FetchWhileUnreachable: while Redis is unreachable, a value the
// loader returned is kept in L1 as a fail-safe candidate, so the next
// Fetches are answered with it (flagged stale) and the loader is called
// again only after FailSafe.Throttle. Once Redis answers, it is never read
// as an L1 hit.
func TestFault_FetchWhileUnreachable(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	clk := newFakeClock()
	c, px, _ := behindProxy(t, func(o *Options) {
		o.Retries, o.Now = -1, clk.Now
		o.OperationTimeout, o.Breaker.Disabled = 200*time.Millisecond, true
		o.FailSafe = FailSafeOptions{MaxDuration: time.Hour, Throttle: 10 * time.Second}
	})
	var calls atomic.Int32
	load := func(context.Context, string) (int, error) { return int(calls.Add(1)), nil }
	fetch := func(step string, wantV, wantCalls int, wantSrc Source) {
		t.Helper()
		v, res, err := FetchResult(ctx, c, "k", load, WithTTL(time.Minute))
		if err != nil || v != wantV || res.Source != wantSrc || res.Stale != (wantSrc == SourceStale) {
			t.Fatalf("%s: got %d %+v %v, want %d from %v", step, v, res, err, wantV, wantSrc)
		}
		if n := int(calls.Load()); n != wantCalls {
			t.Fatalf("%s: loader called %d times, want %d", step, n, wantCalls)
		}
	}
	if err := px.Disable(); err != nil {
		t.Fatal(err)
	}
	fetch("first fetch while unreachable", 1, 1, SourceLoader)
	fetch("within the throttle", 1, 1, SourceStale)
	var got int
	// Lookup may serve it as fail-safe, but only flagged stale.
	if r, err := c.Lookup(ctx, "k", &got); err == nil && !r.Stale {
		t.Fatalf("Lookup while unreachable: %+v, want a stale value or an error", r)
	}
	clk.Advance(11 * time.Second)
	fetch("past the throttle", 2, 2, SourceLoader)
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "Redis reachable", func() error {
		if _, err := c.Lookup(ctx, "probe", &got); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("probe: %v", err)
		}
		return nil
	})
	fetch("Redis back: not an L1 hit", 3, 3, SourceLoader)
	fetch("then cached, in the writer's L1", 3, 3, SourceL1)
}

// TestFault_LivenessEndsFreshness: a connection that stays open but stops
// answering (packets dropped) also stops delivering invalidations. Within
// about OperationTimeout the cache stops serving its L1 as fresh: reads
// are answered by fail-safe, flagged stale.
func TestFault_LivenessEndsFreshness(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	c, px, _ := behindProxy(t, func(o *Options) {
		o.Retries, o.OperationTimeout = -1, 200*time.Millisecond
		o.FailSafe = FailSafeOptions{MaxDuration: time.Hour}
	})
	if err := c.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	var v int
	eventually(t, 5*time.Second, "an L1 hit", func() error {
		if r, err := c.Lookup(ctx, "k", &v); err != nil || r.Source != SourceL1 {
			return fmt.Errorf("%+v %v", r, err)
		}
		return nil
	})
	if err := px.Blackhole(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, 5*time.Second, "L1 no longer fresh", func() error {
		r, err := c.Lookup(ctx, "k", &v)
		if err == nil && r.Source == SourceL1 && !r.Stale {
			return errors.New("still a fresh L1 hit")
		}
		return nil
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("the L1 stayed fresh %v after Redis stopped answering, want within about OperationTimeout", d)
	}
	if n := c.Counters().LinkSuspects; n == 0 {
		t.Fatal("LinkSuspects = 0")
	}
	if err := px.Heal(); err != nil {
		t.Fatal(err)
	}
	if h := c.Health(ctx); h.Checks.Tracking.LinkSuspects == 0 {
		t.Fatalf("the tracking check does not count the missed probes: %+v", h.Checks.Tracking)
	}
}

// TestFault_LivenessEveryClusterMaster: on Cluster, a master that stops
// answering ends L1 freshness even when it does not hold the namespace's
// version key, which the liveness read reaches: the probe also PINGs every
// master.
func TestFault_LivenessEveryClusterMaster(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	cl := redistest.NewCluster(t)
	c := newCache(t, "memory", func(o *Options) {
		o.Redis, o.Logger = RedisOptions{Addrs: cl.Addrs(), Cluster: true}, slog.New(slog.DiscardHandler)
		o.Retries, o.OperationTimeout = -1, 200*time.Millisecond
		o.FailSafe = FailSafeOptions{MaxDuration: time.Hour}
	})
	owns := func(m *redistest.Server, key string) bool { _, err := m.Do("EXISTS", key); return err == nil }
	var victim *redistest.Server
	for _, m := range cl.Masters {
		if !owns(m, c.vers.nsKey) {
			victim = m
			break
		}
	}
	key := ""
	for i := 0; key == ""; i++ {
		if k := "k" + strconv.Itoa(i); owns(victim, c.prefix+k) {
			key = k
		}
	}
	if err := c.Set(ctx, key, 1); err != nil {
		t.Fatal(err)
	}
	var v int
	eventually(t, 5*time.Second, "an L1 hit", func() error {
		if r, err := c.Lookup(ctx, key, &v); err != nil || r.Source != SourceL1 {
			return fmt.Errorf("%+v %v", r, err)
		}
		return nil
	})
	before := c.Counters().LinkSuspects
	if err := victim.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = victim.Resume() })
	start := time.Now()
	eventually(t, 5*time.Second, "L1 no longer fresh", func() error {
		r, err := c.Lookup(ctx, key, &v)
		if err == nil && r.Source == SourceL1 && !r.Stale {
			return errors.New("still a fresh L1 hit")
		}
		return nil
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("the L1 stayed fresh %v after a master stopped answering, want within about OperationTimeout", d)
	}
	if n := c.Counters().LinkSuspects; n == before {
		t.Fatal("LinkSuspects did not move")
	}
	if err := victim.Resume(); err != nil {
		t.Fatal(err)
	}
}

// TestFault_LoaderTimeouts: on the soft timeout a stale value answers at
// once and the loader's late value updates the cache; on the hard timeout
// Fetch fails with ErrLoaderTimeout when there is nothing stale.
func TestFault_LoaderTimeouts(t *testing.T) {
	ctx := context.Background()
	t.Run("soft", func(t *testing.T) {
		clk := newFakeClock()
		c := newCache(t, "memory", func(o *Options) {
			o.Now, o.Logger = clk.Now, slog.New(slog.DiscardHandler)
			o.FailSafe = FailSafeOptions{MaxDuration: time.Hour}
			o.LoaderSoftTimeout, o.LoaderHardTimeout = 50*time.Millisecond, 10*time.Second
		})
		if _, err := Fetch(ctx, c, "k", func(context.Context, string) (int, error) { return 1, nil }, WithTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Minute)
		release := releaser(t)
		start := time.Now()
		v, res, err := FetchResult(ctx, c, "k", func(context.Context, string) (int, error) { <-release.c; return 2, nil })
		if took := time.Since(start); err != nil || v != 1 || !res.Stale || took > time.Second {
			t.Fatalf("soft timeout: %d %+v %v after %v, want stale 1 after ~50ms", v, res, err, took)
		}
		release.open()
		eventually(t, 5*time.Second, "background load cached", func() error {
			v, res, err := FetchResult(ctx, c, "k", func(context.Context, string) (int, error) { return 0, errors.New("no second load") })
			if err != nil || v != 2 || res.Stale {
				return fmt.Errorf("%d %+v %v", v, res, err)
			}
			return nil
		})
	})
	t.Run("hard", func(t *testing.T) {
		c := newCache(t, "memory", func(o *Options) { o.LoaderHardTimeout = 100 * time.Millisecond })
		start := time.Now()
		_, err := Fetch(ctx, c, "k", func(ctx context.Context, _ string) (int, error) { <-ctx.Done(); return 0, ctx.Err() })
		if took := time.Since(start); !errors.Is(err, ErrLoaderTimeout) || took > time.Second {
			t.Fatalf("hard timeout: %v after %v, want ErrLoaderTimeout after ~100ms", err, took)
		}
	})
}

// gate holds blocked loaders until open is called, or the test ends: a
// failing test must not leave a loader that Close would wait for.
type gate struct {
	c    chan struct{}
	once sync.Once
}

func releaser(t *testing.T) *gate {
	g := &gate{c: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.c) }) }

// TestFault_EagerRefresh: a read past the threshold starts exactly one
// background load, and no caller waits for it.
func TestFault_EagerRefresh(t *testing.T) {
	ctx := context.Background()
	clk := newFakeClock()
	c := newCache(t, "memory", func(o *Options) { o.Now, o.EagerRefreshThreshold = clk.Now, 0.5 })
	if _, err := Fetch(ctx, c, "k", func(context.Context, string) (int, error) { return 1, nil }, WithTTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	clk.Advance(40 * time.Second)
	var calls atomic.Int32
	release := releaser(t)
	load := func(context.Context, string) (int, error) { calls.Add(1); <-release.c; return 2, nil }
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			if v, err := Fetch(ctx, c, "k", load, WithTTL(time.Minute)); err != nil || v != 1 {
				errs <- fmt.Errorf("got %d %v, want the current value 1", v, err)
			}
		})
	}
	wg.Wait() // returns while the refresh is still blocked: nobody waited for it
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "background load started", func() error {
		if calls.Load() == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d background loads, want 1", n)
	}
	release.open()
	eventually(t, 5*time.Second, "refreshed value", func() error {
		if v, err := Fetch(ctx, c, "k", load); err != nil || v != 2 {
			return fmt.Errorf("%d %v", v, err)
		}
		return nil
	})
	if n, s := calls.Load(), c.Counters().EagerRefresh; n != 1 || s != 1 {
		t.Fatalf("%d loads, EagerRefresh = %d, want 1 and 1", n, s)
	}
}

// TestFault_FleetLock: with the lock, 4 instances × 50 goroutines on one
// cold key call the loader once; a dead holder blocks no one past the
// lock's TTL; a live slow holder's waiters give up after Lock.MaxWait.
func TestFault_FleetLock(t *testing.T) {
	redistest.Require(t)
	srv := redistest.NewStandalone(t)
	ctx := context.Background()
	fleet := func(t *testing.T, n int, lock LockOptions) []*Cache {
		lock.Enabled = true
		o := Options{Namespace: testNamespace(t), Redis: RedisOptions{Addrs: []string{srv.Addr}}, Lock: lock, Logger: slog.New(slog.DiscardHandler)}
		return faultCaches(t, o, n)
	}
	t.Run("one loader", func(t *testing.T) {
		cs := fleet(t, 4, LockOptions{})
		var calls atomic.Int32
		release := releaser(t)
		load := func(context.Context, string) (int, error) { calls.Add(1); <-release.c; return 42, nil }
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for _, c := range cs {
			for range 50 {
				wg.Go(func() {
					if v, err := Fetch(ctx, c, "cold", load); err != nil || v != 42 {
						errs <- fmt.Errorf("got %d %v", v, err)
					}
				})
			}
		}
		// One instance loads; the three others wait for its value.
		eventually(t, 10*time.Second, "three instances waiting", func() error {
			var w uint64
			for _, c := range cs {
				w += c.Counters().LockWaits
			}
			if w < 3 || calls.Load() != 1 {
				return fmt.Errorf("%d waiting, %d loads", w, calls.Load())
			}
			return nil
		})
		release.open()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("loader called %d times across the fleet, want 1", n)
		}
	})
	lockedFetch := func(t *testing.T, lock LockOptions, holdFor time.Duration) time.Duration {
		cs := fleet(t, 2, lock)
		if _, err := cs[0].TryLock(ctx, "fetch:k", holdFor); err != nil { // and never unlocks
			t.Fatal(err)
		}
		start := time.Now()
		if v, err := Fetch(ctx, cs[1], "k", func(context.Context, string) (int, error) { return 5, nil }); err != nil || v != 5 {
			t.Fatalf("got %d %v", v, err)
		}
		return time.Since(start)
	}
	t.Run("dead holder", func(t *testing.T) {
		lock := LockOptions{TTL: 300 * time.Millisecond, MaxWait: 5 * time.Second}
		if took := lockedFetch(t, lock, lock.TTL); took > lock.TTL+time.Second {
			t.Fatalf("a holder that died blocked a waiter for %v; its lock expired after %v", took, lock.TTL)
		}
	})
	t.Run("max wait", func(t *testing.T) {
		lock := LockOptions{TTL: 10 * time.Second, MaxWait: 300 * time.Millisecond}
		if took := lockedFetch(t, lock, lock.TTL); took < lock.MaxWait || took > lock.MaxWait+time.Second {
			t.Fatalf("a waiter loaded for itself after %v, want about %v", took, lock.MaxWait)
		}
	})
}

// TestFault_RecoveryQueue: while Redis is unreachable, writes and
// invalidations are queued (deduplicated per key, newest wins) and say so;
// a full queue refuses and counts; the queue is replayed once Redis is back.
func TestFault_RecoveryQueue(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	c, px, srv := behindProxy(t, func(o *Options) {
		o.Retries = -1
		o.OperationTimeout, o.RecoveryQueueSize = 200*time.Millisecond, 3
		o.Breaker.OpenTimeout = 100 * time.Millisecond
	})
	direct := peer(t, c, func(o *Options) { o.Redis = RedisOptions{Addrs: []string{srv.Addr}} })
	for _, k := range []string{"a", "b", "t"} {
		if err := c.Set(ctx, k, 1, WithTags("tag")); err != nil {
			t.Fatal(err)
		}
	}
	if err := px.Disable(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		op   func() error
		want error
		qlen int
	}{
		{"set a", func() error { return c.Set(ctx, "a", 2) }, ErrQueued, 1},
		{"delete b", func() error { return c.Delete(ctx, "b") }, ErrQueued, 2},
		{"invalidate tag", func() error { return c.InvalidateTags(ctx, "tag") }, ErrQueued, 3},
		{"set d (full)", func() error { return c.Set(ctx, "d", 1) }, ErrQueueFull, 3},
		{"set a again (newest wins)", func() error { return c.Set(ctx, "a", 3) }, ErrQueued, 3},
	}
	for _, s := range steps {
		err := s.op()
		if !errors.Is(err, s.want) || (s.want == ErrQueueFull && errors.Is(err, ErrQueued)) {
			t.Fatalf("%s: %v, want %v", s.name, err, s.want)
		}
		if n := c.QueueLength(); n != s.qlen || c.Counters().QueueLength != n {
			t.Fatalf("%s: queue length %d (stats %d), want %d", s.name, n, c.Counters().QueueLength, s.qlen)
		}
	}
	if s := c.Counters().QueueOverflow; s != 1 {
		t.Fatalf("QueueOverflow = %d, want 1", s)
	}
	if v, err := getInt(direct, "a"); err != nil || v != 1 {
		t.Fatalf("a queued write was applied early: %d %v", v, err)
	}
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	waitReplayed(t, c)
	if v, err := getInt(direct, "a"); err != nil || v != 3 {
		t.Fatalf("a = %d %v, want the newest queued value 3", v, err)
	}
	for _, k := range []string{"b", "t", "d"} {
		if v, err := getInt(direct, k); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s = %d %v, want not found", k, v, err)
		}
	}
	if s := c.Counters(); s.Replayed != 3 || s.ReplayFailed != 0 {
		t.Fatalf("Replayed %d, ReplayFailed %d, want 3 and 0", s.Replayed, s.ReplayFailed)
	}
}

// TestFault_QueuedWriteRestamped: a Set queued while Redis is unreachable
// is readable once replayed, by the writer and by its peers, even when the
// writer had never read the tag versions (a cold start without Redis) and
// even when an invalidation of its tag, queued before it, is replayed first.
func TestFault_QueuedWriteRestamped(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	c, px, srv := behindProxy(t, func(o *Options) {
		o.Retries = -1
		// No breaker: an open breaker would queue the Set made after
		// recovery whatever the queue holds.
		o.OperationTimeout, o.Breaker.Disabled = 200*time.Millisecond, true
	})
	direct := peer(t, c, func(o *Options) { o.Redis = RedisOptions{Addrs: []string{srv.Addr}} })
	if err := direct.Set(ctx, "old", 1, WithTags("h")); err != nil { // creates the versions
		t.Fatal(err)
	}
	if err := px.Disable(); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name string
		op   func() error
	}{
		{"set cold (never read a version)", func() error { return c.Set(ctx, "cold", 7, WithTags("g")) }},
		{"invalidate h", func() error { return c.InvalidateTags(ctx, "h") }},
		{"set after the invalidation", func() error { return c.Set(ctx, "after", 8, WithTags("h")) }},
	}
	for _, s := range steps {
		if err := s.op(); !errors.Is(err, ErrQueued) {
			t.Fatalf("%s while unreachable: %v, want ErrQueued", s.name, err)
		}
	}
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	// Redis answers again, but the queue waits for the replay loop's next
	// attempt: this Set must go behind the queued invalidation of h.
	if err := c.Set(ctx, "later", 9, WithTags("h")); err != nil && !errors.Is(err, ErrQueued) {
		t.Fatalf("set after recovery: %v", err)
	}
	waitReplayed(t, c)
	for _, r := range []struct {
		name string
		c    *Cache
	}{{"writer", c}, {"peer", direct}} {
		for key, want := range map[string]int{"cold": 7, "after": 8, "later": 9} {
			if v, err := getInt(r.c, key); err != nil || v != want {
				t.Errorf("%s reads %s = %d %v, want %d: the replayed Set is unreadable", r.name, key, v, err, want)
			}
		}
		if v, err := getInt(r.c, "old"); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s reads old = %d %v, want not found: the queued invalidation of h was lost", r.name, v, err)
		}
	}
}

// TestFault_QueueKeepsOrder: an instance's operations on one key take
// effect in the order it made them, also when the older one waited in the
// recovery queue and the newer one reached Redis directly ("newest wins").
// The breaker is off: an open breaker queues the newer operation too and
// hides the race, but only until its first successful probe closes it,
// while the replay loop may still be backing off.
func TestFault_QueueKeepsOrder(t *testing.T) {
	redistest.Require(t)
	for _, then := range []struct {
		name string
		op   func(ctx context.Context, c *Cache) error
		want int // 0: not found
	}{
		{"delete", func(ctx context.Context, c *Cache) error { return c.Delete(ctx, "k") }, 0},
		{"set", func(ctx context.Context, c *Cache) error { return c.Set(ctx, "k", 3) }, 3},
		{"invalidate its tag", func(ctx context.Context, c *Cache) error { return c.InvalidateTags(ctx, "t") }, 0},
	} {
		t.Run(then.name, func(t *testing.T) {
			ctx := context.Background()
			c, px, _ := behindProxy(t, func(o *Options) {
				o.OperationTimeout, o.Retries, o.Breaker.Disabled = 200*time.Millisecond, -1, true
			})
			if err := c.Set(ctx, "k", 1); err != nil {
				t.Fatal(err)
			}
			if _, err := getInt(c, "k"); err != nil { // caches the namespace version
				t.Fatal(err)
			}
			if err := px.Disable(); err != nil {
				t.Fatal(err)
			}
			if err := c.Set(ctx, "k", 2, WithTags("t")); !errors.Is(err, ErrQueued) {
				t.Fatalf("set while unreachable: %v, want ErrQueued", err)
			}
			// Redis stays unreachable until the replay loop has failed five
			// times: its backoff has grown to 1.6 s (capped at 1 s), so the
			// next operation comes well before its next attempt.
			eventually(t, 10*time.Second, "the replay loop backing off", func() error {
				if n := c.rec.stalled.Load(); n < 5 {
					return fmt.Errorf("%d failed replays", n)
				}
				return nil
			})
			if err := px.Enable(); err != nil {
				t.Fatal(err)
			}
			// Applied, or queued behind the older Set: either keeps the order.
			if err := then.op(ctx, c); err != nil && !errors.Is(err, ErrQueued) {
				t.Fatalf("%s after recovery: %v", then.name, err)
			}
			waitReplayed(t, c)
			v, err := getInt(c, "k")
			if (then.want == 0 && !errors.Is(err, ErrNotFound)) || (then.want != 0 && v != then.want) {
				t.Fatalf("after the acknowledged %s, the queued older Set was replayed over it: k = %d %v, want %d", then.name, v, err, then.want)
			}
		})
	}
}

// TestFault_ReplayCost measures the replay of recent invalidations after a
// lost link: 1000 Deletes and 100 tag invalidations acknowledged, then
// every connection killed.
func TestFault_ReplayCost(t *testing.T) {
	redistest.Require(t)
	srv := redistest.NewStandalone(t)
	ctx := context.Background()
	c := newCache(t, "memory", func(o *Options) { o.Redis = RedisOptions{Addrs: []string{srv.Addr}} })
	const deletes, tags = 1000, 100
	for i := range deletes {
		if err := c.Delete(ctx, fmt.Sprint("k", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range tags {
		if err := c.InvalidateTags(ctx, fmt.Sprint("t", i)); err != nil {
			t.Fatal(err)
		}
	}
	before := c.Counters().Replayed
	start := time.Now()
	if _, err := srv.Do("CLIENT", "KILL", "TYPE", "normal"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "replay", func() error {
		if s := c.Counters(); s.Replayed-before < deletes+tags || s.QueueLength > 0 {
			return fmt.Errorf("%d replayed, %d queued", s.Replayed-before, s.QueueLength)
		}
		return nil
	})
	took := time.Since(start)
	if n := c.Counters().Replayed - before; n != deletes+tags {
		t.Fatalf("replayed %d operations, want %d", n, deletes+tags)
	}
	t.Logf("REPLAY-COST: %d Deletes + %d tag invalidations replayed after a lost link in %v", deletes, tags, took.Round(time.Millisecond))
}

// waitReplayed waits for c's recovery queue to be empty.
func waitReplayed(t *testing.T, c *Cache) {
	t.Helper()
	eventually(t, 10*time.Second, "queue replayed", func() error {
		if n := c.QueueLength(); n > 0 {
			return fmt.Errorf("%d left", n)
		}
		return nil
	})
}

// behindProxy starts a redis-server with a test proxy in front of it, and
// a cache that reaches the server through the proxy, with its logs
// discarded; mod adjusts the options.
func behindProxy(t *testing.T, mod func(*Options)) (*Cache, *redistest.Proxy, *redistest.Server) {
	t.Helper()
	srv := redistest.NewStandalone(t)
	px := redistest.NewProxy(t, srv.Addr)
	c := newCache(t, "memory", func(o *Options) {
		o.Redis, o.Logger = RedisOptions{Addrs: []string{px.Addr}}, slog.New(slog.DiscardHandler)
		mod(o)
	})
	return c, px, srv
}

// TestFault_LivenessIntervalOff: with LivenessInterval negative there is
// no probe, so a Redis that stops answering (without closing the link) no
// longer ends L1 freshness: for over three times the span in which
// TestFault_LivenessEndsFreshness sees it end, the entry stays a fresh L1
// hit and no link suspect is counted.
func TestFault_LivenessIntervalOff(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	c, px, _ := behindProxy(t, func(o *Options) {
		o.Retries, o.OperationTimeout = -1, 200*time.Millisecond
		o.LivenessInterval = -1
	})
	if err := c.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	var v int
	eventually(t, 5*time.Second, "an L1 hit", func() error {
		if r, err := c.Lookup(ctx, "k", &v); err != nil || r.Source != SourceL1 {
			return fmt.Errorf("%+v %v", r, err)
		}
		return nil
	})
	if err := px.Blackhole(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = px.Heal() }()
	for start := time.Now(); time.Since(start) < 1200*time.Millisecond; {
		if r, err := c.Lookup(ctx, "k", &v); err != nil || r.Source != SourceL1 || r.Stale {
			t.Fatalf("after %v: %+v %v, want a fresh L1 hit with the probe off", time.Since(start), r, err)
		}
		time.Sleep(10 * time.Millisecond) // pacing the reads, not synchronisation
	}
	if n := c.Counters().LinkSuspects; n != 0 {
		t.Fatalf("LinkSuspects = %d with the probe off", n)
	}
}

// TestFault_FleetLockWakesWaiters: a lock waiter is woken by the
// invalidation Redis sends when the holder writes the key, not by its
// polling: with polling steps of a minute, the waiter still answers with
// the holder's value once the holder's loader returns, on every topology
// with Redis.
func TestFault_FleetLockWakesWaiters(t *testing.T) {
	redistest.Require(t)
	for _, topo := range []string{"standalone", "sentinel", "cluster", "production"} {
		t.Run(topo, func(t *testing.T) { checkWaiterWoken(t, topo, true) })
	}
}

// checkWaiterWoken is the scenario of TestFault_FleetLockWakesWaiters
// (with L1) and TestTracking_LockWaiterWokenWithoutL1: a waiter whose
// polls are a minute apart answers with the holder's value once the
// holder's loader returns, woken by the holder's write.
func checkWaiterWoken(t *testing.T, topo string, withL1 bool) {
	ctx := context.Background()
	ns := namespaceFor(t, topo)
	mk := func() *Cache {
		return newCache(t, topo, func(o *Options) {
			o.Namespace = ns
			o.L1.Disabled = !withL1
			o.Lock = LockOptions{Enabled: true, MaxWait: 2 * time.Minute, TTL: 2 * time.Minute}
			o.Logger = slog.New(slog.DiscardHandler)
		})
	}
	holder, waiter := mk(), mk()
	waiter.lockPoll = [2]time.Duration{time.Minute, time.Minute}
	release, loading := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		_, err := Fetch(ctx, holder, "cold", func(context.Context, string) (int, error) {
			close(loading)
			<-release
			return 42, nil
		})
		held <- err
	}()
	<-loading
	got := make(chan error, 1)
	go func() {
		v, err := Fetch(ctx, waiter, "cold", func(context.Context, string) (int, error) {
			return 0, errors.New("the waiter loaded: it should have waited for the holder")
		})
		if err == nil && v != 42 {
			err = fmt.Errorf("got %d, want the holder's 42", v)
		}
		got <- err
	}()
	eventually(t, 10*time.Second, "the waiter waiting", func() error {
		if n := waiter.Counters().LockWaits; n != 1 {
			return fmt.Errorf("%d lock waits", n)
		}
		return nil
	})
	close(release)
	if err := <-held; err != nil {
		t.Fatalf("holder: %v", err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter was not woken by the holder's write (its next poll is a minute away)")
	}
	if n := waiter.counter.lockWakeups.Load(); n == 0 {
		t.Fatal("lockWakeups = 0")
	}
}
