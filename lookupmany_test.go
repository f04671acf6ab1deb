package tiercache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestLookupMany reads keys written by SetItems on every topology: one
// KeyResult per distinct key in order, the tier of each answer, misses
// and tag invalidations as ErrNotFound, the write and expiry times. On
// Cluster the keys are spread over several masters.
func TestLookupMany(t *testing.T) {
	t.Parallel()
	eachTopology(t, func(t *testing.T, topo string) {
		t.Parallel()
		ctx := context.Background()
		c := newCache(t, topo)
		var items []Item
		var keys []string
		for i := range 12 {
			k := "user:" + strconv.Itoa(i)
			items = append(items, Item{Key: k, Value: []byte("v" + strconv.Itoa(i)), TTL: time.Duration(i+1) * time.Minute})
			keys = append(keys, k)
		}
		items[0].Tags = []string{"org:7"}
		before := time.Now().Add(-time.Second)
		if err := c.SetItems(ctx, items); err != nil {
			t.Fatal(err)
		}
		if topo == "cluster" {
			wantSpread(t, c, keys)
		}
		ask := append([]string{"absent"}, keys...)
		ask = append(ask, "user:3") // a duplicate: answered once

		// The writer's L1 holds what it wrote (read-your-own-writes).
		for round, want := range []string{"hit-l1", "hit-l1"} {
			got := map[string]Raw{}
			res, err := c.LookupMany(ctx, ask, got)
			if err != nil {
				t.Fatal(err)
			}
			if len(res) != len(keys)+1 || res[0].Key != "absent" || !errors.Is(res[0].Err, ErrNotFound) {
				t.Fatalf("round %d: %d results, first %+v; want %d, absent a miss", round, len(res), res[0], len(keys)+1)
			}
			for i, r := range res[1:] {
				if r.Key != keys[i] || r.Err != nil || r.Result.Source.String() != want || r.Result.Stale {
					t.Fatalf("round %d: result %d %+v, want %s answered by %s", round, i, r, keys[i], want)
				}
				if string(got[r.Key].Data) != "v"+strconv.Itoa(i) || got[r.Key].Codec != "raw" {
					t.Errorf("round %d: %s = %+v", round, r.Key, got[r.Key])
				}
				ttl := time.Duration(i+1) * time.Minute
				if r.Result.CreatedAt.Before(before) || r.Result.ExpiresAt.Sub(r.Result.CreatedAt) != ttl {
					t.Errorf("round %d: %s written %v, expires %v; want a TTL of %v", round, r.Key, r.Result.CreatedAt, r.Result.ExpiresAt, ttl)
				}
			}
			if _, ok := got["absent"]; ok || len(got) != len(keys) {
				t.Errorf("round %d: the map holds %d keys, want %d without the miss", round, len(got), len(keys))
			}
		}

		if err := c.InvalidateTags(ctx, "org:7"); err != nil {
			t.Fatal(err)
		}
		res, err := c.LookupMany(ctx, keys[:2], map[string]string{})
		if err != nil || !errors.Is(res[0].Err, ErrNotFound) || res[1].Err != nil || res[1].Result.Source != SourceL1 {
			t.Fatalf("after InvalidateTags: %+v %v; want the tagged key a miss, the other an L1 hit", res, err)
		}
	})
}

// wantSpread fails t unless keys of c are held by at least two masters of
// the shared cluster.
func wantSpread(t *testing.T, c *Cache, keys []string) {
	t.Helper()
	holders := map[string]bool{}
	for _, m := range shared.Get(t, "cluster").Masters() {
		for _, k := range keys {
			if n, err := m.Do("EXISTS", c.prefix+k); err == nil && n == int64(1) {
				holders[m.Addr] = true
			}
		}
	}
	if len(holders) < 2 {
		t.Fatalf("the keys are on %d masters, want at least 2", len(holders))
	}
}

// TestLookupMany_Invalid: a bad key or destination fails the whole call
// and reads nothing.
func TestLookupMany_Invalid(t *testing.T) {
	t.Parallel()
	c := newCache(t, "memory")
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		keys []string
		dst  any
		want error
	}{
		{"empty key", []string{"a", ""}, map[string]Raw{}, ErrInvalidKey},
		{"nil map", []string{"a"}, map[string]Raw(nil), ErrInvalidDestination},
		{"not a map", []string{"a"}, &Raw{}, ErrInvalidDestination},
	} {
		if res, err := c.LookupMany(ctx, tc.keys, tc.dst); !errors.Is(err, tc.want) || res != nil {
			t.Errorf("%s: %v, %v; want %v", tc.name, res, err, tc.want)
		}
	}
	if q := c.Counters().Requests; q.All() != 0 {
		t.Errorf("%d reads counted, want none", q.All())
	}
	// A value that does not decode into the element type fails that key.
	if err := c.Set(ctx, "text", []byte("not a number")); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "n", 7); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	res, err := c.LookupMany(ctx, []string{"text", "n"}, &got)
	if err != nil || res[0].Err == nil || res[1].Err != nil || got["n"] != 7 || len(got) != 1 {
		t.Errorf("%+v %v %v: want text failed, n = 7", res, got, err)
	}
}

// TestLookupMany_FailSafe kills the Redis under a cache: keys L1 holds
// are answered stale, the others fail with ErrUnavailable (or
// ErrCircuitOpen, once the breaker opens) in their own
// KeyResult, and the call itself succeeds.
func TestLookupMany_FailSafe(t *testing.T) {
	t.Parallel()
	redistest.Require(t)
	ctx := context.Background()
	srv := redistest.NewStandalone(t)
	c := newCache(t, "memory", func(o *Options) {
		o.Redis, o.Logger = RedisOptions{Addrs: []string{srv.Addr}}, slog.New(slog.DiscardHandler)
		o.Retries, o.OperationTimeout = -1, 200*time.Millisecond
		o.FailSafe = FailSafeOptions{MaxDuration: time.Hour}
	})
	if err := c.SetItems(ctx, []Item{{Key: "held", Value: []byte("h")}, {Key: "cold", Value: []byte("c")}}); err != nil {
		t.Fatal(err)
	}
	c.l1.Invalidate("cold") // as if evicted: only L2 has it
	if _, err := c.LookupMany(ctx, []string{"held"}, map[string]Raw{}); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	got := map[string]Raw{}
	eventually(t, 10*time.Second, "a stale answer", func() error {
		clear(got)
		res, err := c.LookupMany(ctx, []string{"held", "cold"}, got)
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Err != nil || string(got["held"].Data) != "h" {
			t.Fatalf("held: %+v, %q", res[0], got["held"].Data)
		}
		if res[0].Result.Source != SourceStale {
			return fmt.Errorf("held answered by %s", res[0].Result.Source)
		}
		if !res[0].Result.Stale || res[1].Err == nil || errors.Is(res[1].Err, ErrNotFound) {
			t.Fatalf("held %+v, cold %+v: want held flagged stale, cold failed", res[0], res[1])
		}
		if !errors.Is(res[1].Err, ErrUnavailable) && !errors.Is(res[1].Err, ErrCircuitOpen) {
			t.Errorf("cold: %v, want ErrUnavailable or ErrCircuitOpen", res[1].Err)
		}
		return nil
	})
	if _, ok := got["cold"]; ok {
		t.Error("the failed key is in the map")
	}
	if n := c.Counters().Requests[OpGetMany][ResultStale]; n == 0 {
		t.Error("no stale read counted")
	}
}
