package tiercache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestCounters_OneClassifier: every answer of every read operation lands
// in exactly one result of Requests, and Counters' totals move with it: an
// L2 hit, an L1 hit, a miss, a corrupt value (a miss, also in Corrupt) and
// a fail-safe stale answer while Redis is unreachable, for Get, Lookup,
// Fetch, GetMany, LookupMany and FetchMany.
func TestCounters_OneClassifier(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	px := redistest.NewProxy(t, srv.Addr)
	ctx := context.Background()
	clk := newFakeClock()
	c := newCache(t, "memory", func(o *Options) {
		o.Redis = RedisOptions{Addrs: []string{px.Addr}}
		o.Now, o.Logger = clk.Now, discardLogger()
		o.FailSafe = FailSafeOptions{MaxDuration: time.Hour, Throttle: time.Second}
		o.OperationTimeout = 2 * time.Second
	})
	d := newCache(t, "memory", func(o *Options) {
		o.Namespace = c.opts.Namespace
		o.Redis = RedisOptions{Addrs: []string{srv.Addr}}
		o.Now, o.Logger = clk.Now, discardLogger()
	})
	failing := errors.New("database down")
	load := func(fail bool) func(context.Context, string) (string, error) {
		return func(context.Context, string) (string, error) {
			if fail {
				return "", failing
			}
			return "loaded", nil
		}
	}
	loadMany := func(fail bool) func(context.Context, []string) (map[string]string, error) {
		return func(_ context.Context, keys []string) (map[string]string, error) {
			if fail {
				return nil, failing
			}
			out := map[string]string{}
			for _, k := range keys {
				out[k] = "loaded"
			}
			return out, nil
		}
	}
	reads := []struct {
		name string
		op   Op
		// negL2 is how a cached "not found" read from L2 counts: a hit
		// of L2, except for Fetch and FetchMany, where it is a miss.
		negL2 RequestResult
		read  func(key string, failLoad bool)
	}{
		{"get", OpGet, ResultHitL2, func(k string, _ bool) { var v string; _ = c.Get(ctx, k, &v) }},
		{"lookup", OpGet, ResultHitL2, func(k string, _ bool) { var v string; _, _ = c.Lookup(ctx, k, &v) }},
		{"fetch", OpFetch, ResultMiss, func(k string, f bool) { _, _ = Fetch(ctx, c, k, load(f)) }},
		{"getmany", OpGetMany, ResultHitL2, func(k string, _ bool) { m := map[string]string{}; _ = c.GetMany(ctx, []string{k}, m) }},
		{"lookupmany", OpGetMany, ResultHitL2, func(k string, _ bool) { m := map[string]string{}; _, _ = c.LookupMany(ctx, []string{k}, m) }},
		{"fetchmany", OpFetchMany, ResultMiss, func(k string, f bool) { _, _ = FetchMany(ctx, c, []string{k}, loadMany(f)) }},
	}
	// expect runs read and checks that exactly one answer of result want
	// was counted, in Requests[op] and in the totals of Counters.
	expect := func(t *testing.T, op Op, want RequestResult, corrupt bool, read func()) {
		t.Helper()
		before := c.Counters()
		read()
		after := c.Counters()
		for r := range NumResults {
			var n uint64
			if r == want {
				n = 1
			}
			if got := after.Requests[op][r] - before.Requests[op][r]; got != n {
				t.Errorf("Requests[%v][%v] moved by %d, want %d", op, r, got, n)
			}
		}
		totals := map[RequestResult][2]uint64{
			ResultHitL1: {before.HitsL1, after.HitsL1},
			ResultHitL2: {before.HitsL2, after.HitsL2},
			ResultMiss:  {before.Misses, after.Misses},
			ResultStale: {before.StaleServed, after.StaleServed},
		}
		for r, ba := range totals {
			var n uint64
			if r == want {
				n = 1
			}
			if ba[1]-ba[0] != n {
				t.Errorf("the Counters total of %v moved by %d, want %d", r, ba[1]-ba[0], n)
			}
		}
		if got, n := after.Corrupt-before.Corrupt, map[bool]uint64{true: 1}[corrupt]; got != n {
			t.Errorf("Corrupt moved by %d, want %d", got, n)
		}
	}
	for _, rd := range reads {
		t.Run(rd.name, func(t *testing.T) {
			k := func(s string) string { return rd.name + ":" + s }
			if err := d.Set(ctx, k("hit"), "v", WithTTL(time.Minute)); err != nil {
				t.Fatal(err)
			}
			expect(t, rd.op, ResultHitL2, false, func() { rd.read(k("hit"), false) })
			expect(t, rd.op, ResultHitL1, false, func() { rd.read(k("hit"), false) })
			expect(t, rd.op, ResultMiss, false, func() { rd.read(k("absent"), false) })
			notFound := func(context.Context, string) (string, error) { return "", ErrNotFound }
			if _, err := Fetch(ctx, d, k("negative"), notFound); !errors.Is(err, ErrNotFound) {
				t.Fatalf("caching a not found: %v", err)
			}
			expect(t, rd.op, rd.negL2, false, func() { rd.read(k("negative"), false) })
			expect(t, rd.op, ResultHitL1, false, func() { rd.read(k("negative"), false) })
			if err := c.store.Set(ctx, c.prefix+k("corrupt"), []byte{'T', 'C', 99, 1, 0}, time.Minute); err != nil {
				t.Fatal(err)
			}
			expect(t, rd.op, ResultMiss, true, func() { rd.read(k("corrupt"), false) })

			// Past its TTL, with Redis unreachable and the loader failing:
			// the copy in L1 answers, as stale.
			if err := d.Set(ctx, k("stale"), "v", WithTTL(time.Minute)); err != nil {
				t.Fatal(err)
			}
			expect(t, rd.op, ResultHitL2, false, func() { rd.read(k("stale"), false) })
			clk.Advance(2 * time.Minute)
			if err := px.Disable(); err != nil {
				t.Fatal(err)
			}
			expect(t, rd.op, ResultStale, false, func() { rd.read(k("stale"), true) })
			if err := px.Enable(); err != nil {
				t.Fatal(err)
			}
			waitFor(t, func() bool {
				_, err := c.store.Get(ctx, c.prefix+k("hit"))
				return err == nil && c.QueueLength() == 0
			})
		})
	}
}
