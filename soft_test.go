package tiercache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

var errLoaderDown = errors.New("loader down")

func failingLoader(context.Context, string) (int, error) { return 0, errLoaderDown }

func loaderOf(v int) LoaderFunc[int] {
	return func(context.Context, string) (int, error) { return v, nil }
}

// withFailSafe turns fail-safe on with a throttle short enough for tests.
func withFailSafe(o *Options) {
	o.FailSafe = FailSafeOptions{MaxDuration: time.Hour, Throttle: 50 * time.Millisecond}
}

// missedBy waits until c misses key (its soft or hard invalidation reached
// c).
func missedBy(t *testing.T, c *Cache, key string) {
	t.Helper()
	eventually(t, 2*time.Second, "a miss on "+key, func() error {
		if v, err := getInt(c, key); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("reads %d, %v", v, err)
		}
		return nil
	})
}

// servesStale checks that Fetch with a failing loader answers key's old
// value want, flagged stale.
func servesStale(t *testing.T, c *Cache, key string, want int) {
	t.Helper()
	v, res, err := FetchResult(context.Background(), c, key, failingLoader)
	if err != nil || v != want || !res.Stale || res.Source != SourceStale {
		t.Fatalf("Fetch(%q) with a failing loader = %d, %+v, %v; want the stale %d", key, v, res, err, want)
	}
}

// servesNothing checks that Fetch with a failing loader fails: key's old
// value was invalidated hard.
func servesNothing(t *testing.T, c *Cache, key string) {
	t.Helper()
	if v, res, err := FetchResult(context.Background(), c, key, failingLoader); !errors.Is(err, errLoaderDown) {
		t.Fatalf("Fetch(%q) with a failing loader = %d, %+v, %v; want the loader's error", key, v, res, err)
	}
}

// TestSoftInvalidation: InvalidateTagsSoft, ClearSoft and DeleteSoft make
// entries stale in every instance: reads miss them, a load replaces them,
// and a failing load is answered with them; a later hard invalidation
// removes them for good. Entries outside the invalidation are untouched.
func TestSoftInvalidation(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		a := newCache(t, topo, withFailSafe)
		b := peer(t, a, withFailSafe)
		set := func(key string, v int, tags ...string) {
			t.Helper()
			if err := a.Set(ctx, key, v, WithTags(tags...)); err != nil {
				t.Fatal(err)
			}
			// b reads it into its L1.
			eventually(t, 2*time.Second, "b reads "+key, func() error {
				if got, src := lookupInt(t, b, key); got != v || src != SourceL1 && src != SourceL2 {
					return fmt.Errorf("reads %d from %v", got, src)
				}
				return nil
			})
		}

		t.Run("tags", func(t *testing.T) {
			set("t1", 1, "g")
			set("t2", 2, "g", "other")
			set("t3", 3, "h")
			if err := a.InvalidateTagsSoft(ctx, "g"); err != nil {
				t.Fatal(err)
			}
			for _, c := range []*Cache{a, b} {
				missedBy(t, c, "t1")
				missedBy(t, c, "t2")
				if v, err := getInt(c, "t3"); err != nil || v != 3 {
					t.Fatalf("t3, outside the tag, reads %d, %v", v, err)
				}
			}
			servesStale(t, b, "t1", 1)
			servesStale(t, b, "t1", 1) // the throttle copy, still stale
			servesStale(t, a, "t2", 2)
			// A load replaces the stale entry, for every instance.
			if v, res, err := FetchResult(ctx, a, "t1", loaderOf(10), WithTags("g")); err != nil || v != 10 || res.Stale {
				t.Fatalf("Fetch after a soft invalidation = %d, %+v, %v; want the loaded 10", v, res, err)
			}
			eventually(t, 2*time.Second, "b reads the reload", func() error {
				if v, err := getInt(b, "t1"); err != nil || v != 10 {
					return fmt.Errorf("reads %d, %v", v, err)
				}
				return nil
			})
			// A hard invalidation after the soft one removes the stale t2.
			if err := b.InvalidateTags(ctx, "g"); err != nil {
				t.Fatal(err)
			}
			missedBy(t, a, "t1")
			servesNothing(t, a, "t2")
			servesNothing(t, b, "t2")
			servesNothing(t, b, "t1")
		})

		t.Run("clear", func(t *testing.T) {
			set("c1", 1)
			set("c2", 2, "x")
			if err := b.ClearSoft(ctx); err != nil {
				t.Fatal(err)
			}
			for _, c := range []*Cache{a, b} {
				missedBy(t, c, "c1")
				missedBy(t, c, "c2")
			}
			servesStale(t, a, "c1", 1)
			servesStale(t, b, "c2", 2)
			if err := a.Clear(ctx); err != nil {
				t.Fatal(err)
			}
			missedBy(t, b, "c2")
			servesNothing(t, a, "c1")
			servesNothing(t, b, "c2")
		})

		t.Run("delete", func(t *testing.T) {
			set("d1", 1, "y")
			set("d2", 2)
			set("d3", 3)
			if err := a.DeleteSoft(ctx, "d1", "d2", "missing"); err != nil {
				t.Fatal(err)
			}
			for _, c := range []*Cache{a, b} {
				missedBy(t, c, "d1")
				missedBy(t, c, "d2")
				if v, err := getInt(c, "d3"); err != nil || v != 3 {
					t.Fatalf("d3, not deleted, reads %d, %v", v, err)
				}
			}
			servesStale(t, b, "d1", 1)
			if v, res, err := FetchResult(ctx, b, "d2", loaderOf(20)); err != nil || v != 20 || res.Stale {
				t.Fatalf("Fetch after a soft delete = %d, %+v, %v; want the loaded 20", v, res, err)
			}
			if err := b.Delete(ctx, "d1"); err != nil {
				t.Fatal(err)
			}
			servesNothing(t, a, "d1")
			if err := a.Delete(ctx, "missing"); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("many", func(t *testing.T) {
			set("m1", 1, "mg")
			set("m2", 2, "mg")
			if err := a.InvalidateTagsSoft(ctx, "mg"); err != nil {
				t.Fatal(err)
			}
			missedBy(t, b, "m1")
			got, err := FetchMany(ctx, b, []string{"m1", "m2"}, func(context.Context, []string) (map[string]int, error) {
				return nil, errLoaderDown
			})
			if err != nil || got["m1"] != 1 || got["m2"] != 2 {
				t.Fatalf("FetchMany with a failing loader = %v, %v; want the stale 1 and 2", got, err)
			}
			vals := map[string]int{}
			if err := a.GetMany(ctx, []string{"m1", "m2"}, vals); err != nil || len(vals) != 0 {
				t.Fatalf("GetMany after a soft invalidation = %v, %v; want misses", vals, err)
			}
		})
	})
}

// TestSoftInvalidation_WithoutFailSafe: without fail-safe there is nothing
// to fall back on, and a soft invalidation is a hard one.
func TestSoftInvalidation_WithoutFailSafe(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		for i, k := range []string{"a", "b", "c"} {
			if err := c.Set(ctx, k, i, WithTags("g")); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.InvalidateTagsSoft(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		servesNothing(t, c, "a")
		if err := c.DeleteSoft(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		servesNothing(t, c, "b")
		if err := c.ClearSoft(ctx); err != nil {
			t.Fatal(err)
		}
		servesNothing(t, c, "c")
	})
}

// TestSoftInvalidation_VersionStep: a soft invalidation adds 2^32 to the
// tag's counter in Redis, a hard one 1; an entry stays stale only while
// the difference is soft increments alone.
func TestSoftInvalidation_VersionStep(t *testing.T) {
	for _, tc := range []struct {
		recorded, current uint64
		want              validity
	}{
		{5, 5, validYes},
		{5, 5 + softStep, validSoft},
		{5, 5 + 3*softStep, validSoft},
		{5, 6, validNo},
		{5, 6 + softStep, validNo},
		{5 + softStep, 5, validNo},
		{5, 4, validNo},
	} {
		if got := relate(tc.recorded, tc.current); got != tc.want {
			t.Errorf("relate(%d, %d) = %d, want %d", tc.recorded, tc.current, got, tc.want)
		}
	}

	redistest.Require(t)
	ctx := context.Background()
	c := newCache(t, "standalone", withFailSafe)
	if err := c.Set(ctx, "k", 1, WithTags("g")); err != nil {
		t.Fatal(err)
	}
	read := func() uint64 {
		t.Helper()
		n, err := strconv.ParseUint(fmt.Sprint(rawDo(t, "standalone", "GET", c.vers.tagKey("g"))), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	v0 := read()
	if err := c.InvalidateTagsSoft(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if v1 := read(); v1 != v0+softStep {
		t.Fatalf("soft invalidation moved the counter from %d to %d, want +2^32", v0, v1)
	}
	if err := c.InvalidateTags(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if v2 := read(); v2 != v0+softStep+1 {
		t.Fatalf("hard invalidation moved the counter to %d, want %d", v2, v0+softStep+1)
	}
}

// TestSoftInvalidation_Queued: a soft invalidation made while Redis is
// unreachable is queued as a soft one: meanwhile the writer's L1 keeps the
// entries as fail-safe fallbacks, and once replayed they are stale in L2,
// not gone. A hard invalidation of the same tag queued after it wins.
func TestSoftInvalidation_Queued(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	c, px, srv := behindProxy(t, func(o *Options) {
		o.Retries = -1
		o.OperationTimeout = 200 * time.Millisecond
		o.Breaker.OpenTimeout = 100 * time.Millisecond
		withFailSafe(o)
	})
	direct := peer(t, c, func(o *Options) {
		o.Redis = RedisOptions{Addrs: []string{srv.Addr}}
		withFailSafe(o)
	})
	for i, k := range []string{"s1", "s2", "h1"} {
		tag := "soft"
		if k == "h1" {
			tag = "hard"
		}
		if err := c.Set(ctx, k, i+1, WithTags(tag)); err != nil {
			t.Fatal(err)
		}
	}
	if err := px.Disable(); err != nil {
		t.Fatal(err)
	}
	if err := c.InvalidateTagsSoft(ctx, "soft"); !errors.Is(err, ErrQueued) {
		t.Fatalf("InvalidateTagsSoft while unreachable: %v, want ErrQueued", err)
	}
	if err := c.InvalidateTagsSoft(ctx, "hard"); !errors.Is(err, ErrQueued) {
		t.Fatal(err)
	}
	if err := c.InvalidateTags(ctx, "hard"); !errors.Is(err, ErrQueued) {
		t.Fatal(err)
	}
	if err := c.InvalidateTagsSoft(ctx, "hard"); !errors.Is(err, ErrQueued) {
		t.Fatal(err)
	}
	if n := c.QueueLength(); n != 2 {
		t.Fatalf("queue length %d, want 2 (one increment per tag)", n)
	}
	servesStale(t, c, "s1", 1)
	servesNothing(t, c, "h1")
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	waitReplayed(t, c)
	for _, x := range []*Cache{c, direct} {
		missedBy(t, x, "s2")
		missedBy(t, x, "h1")
	}
	servesStale(t, direct, "s2", 2)
	servesNothing(t, direct, "h1")
}

// TestQueueFull_InvalidationNotPending: an invalidation refused because
// the recovery queue is full (ErrQueueFull: neither applied nor queued)
// leaves no trace: once Redis is back, the entries of its tag read as
// before, on this instance too.
func TestQueueFull_InvalidationNotPending(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	c, px, _ := behindProxy(t, func(o *Options) {
		o.Retries = -1
		o.OperationTimeout, o.RecoveryQueueSize = 200*time.Millisecond, 1
		o.Breaker.OpenTimeout = 100 * time.Millisecond
	})
	if err := c.Set(ctx, "k", 1, WithTags("t")); err != nil {
		t.Fatal(err)
	}
	if err := px.Disable(); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "a", 1); !errors.Is(err, ErrQueued) {
		t.Fatalf("Set while unreachable: %v, want ErrQueued", err)
	}
	for _, inv := range []func() error{
		func() error { return c.InvalidateTags(ctx, "t") },
		func() error { return c.InvalidateTagsSoft(ctx, "t") },
	} {
		if err := inv(); !errors.Is(err, ErrQueueFull) || errors.Is(err, ErrQueued) {
			t.Fatalf("invalidation with the queue full: %v, want ErrQueueFull", err)
		}
	}
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	waitReplayed(t, c)
	eventually(t, 5*time.Second, "k readable again", func() error {
		if v, err := getInt(c, "k"); err != nil || v != 1 {
			return fmt.Errorf("reads %d, %v", v, err)
		}
		return nil
	})
}
