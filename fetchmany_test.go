package tiercache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// batchRecorder is a batch loader that records the keys of each call and
// answers "v-<key>", optionally after a gate opens.
type batchRecorder struct {
	mu      sync.Mutex
	calls   [][]string
	started chan struct{} // receives once per call, when not nil
	gate    *gate         // the call waits for it, when not nil
	err     error         // returned instead of values, when set
	prefix  string
}

func (r *batchRecorder) load(ctx context.Context, keys []string) (map[string]string, error) {
	r.mu.Lock()
	r.calls = append(r.calls, slices.Sorted(slices.Values(keys)))
	r.mu.Unlock()
	if r.started != nil {
		r.started <- struct{}{}
	}
	if r.gate != nil {
		select {
		case <-r.gate.c:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		out[k] = r.prefix + "v-" + k
	}
	return out, nil
}

func (r *batchRecorder) keys() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// TestFetchMany_SharesFlights: a key that a Fetch or another FetchMany of
// the same process is loading is waited for, not loaded again.
//
// A link reset (a liveness suspect on a loaded machine, or the first
// connection to a Cluster node) moves every flight to a new key by design
// (see flightKey): when one happens while the three calls join, that
// attempt proves nothing and runs again, on a fresh cache, up to five
// times.
func TestFetchMany_SharesFlights(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		for attempt := 1; ; attempt++ {
			if sharesFlights(t, topo) {
				return
			}
			if attempt == 5 {
				t.Fatalf("a link reset moved the flights in each of %d attempts", attempt)
			}
			t.Logf("attempt %d: the flights moved (a link reset) while the calls joined; again", attempt)
		}
	})
}

// sharesFlights is one attempt of TestFetchMany_SharesFlights. It reports
// false, asserting nothing, when the flights moved while the calls joined.
func sharesFlights(t *testing.T, topo string) bool {
	ctx := context.Background()
	c := newCache(t, topo)
	// Open the connections to every node first: on Cluster, a first
	// connection to a node resets the link (and moves every flight
	// to a new key) while the calls below are joining.
	for _, k := range []string{"k1", "k2", "k3"} {
		if _, err := getInt(c, k); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
	}
	gen := c.vers.gen.Load()
	fetchGate := releaser(t)
	fetchStarted := make(chan struct{})
	fetchDone := make(chan string, 1)
	go func() {
		v, err := Fetch(ctx, c, "k1", func(context.Context, string) (string, error) {
			close(fetchStarted)
			<-fetchGate.c
			return "fetched", nil
		})
		if err != nil {
			t.Error(err)
		}
		fetchDone <- v
	}()
	<-fetchStarted

	a := &batchRecorder{started: make(chan struct{}, 1), gate: releaser(t)}
	aDone := make(chan map[string]string, 1)
	go func() {
		m, err := FetchMany(ctx, c, []string{"k1", "k2"}, a.load)
		if err != nil {
			t.Error(err)
		}
		aDone <- m
	}()
	// a leads k2 and waits for the Fetch's k1, unless the flights moved:
	// then it loads both at once, without waiting.
	<-a.started

	b := &batchRecorder{}
	bDone := make(chan map[string]string, 1)
	go func() {
		m, err := FetchMany(ctx, c, []string{"k2", "k3"}, b.load)
		if err != nil {
			t.Error(err)
		}
		bDone <- m
	}()
	// b loads k3 alone, then waits for a's k2.
	eventually(t, 5*time.Second, "b's load", func() error {
		if len(b.keys()) == 0 {
			return errors.New("not called yet")
		}
		return nil
	})
	moved := c.vers.gen.Load() != gen
	a.gate.open()
	fetchGate.open()
	gotA, gotB := <-aDone, <-bDone
	if v := <-fetchDone; v != "fetched" {
		t.Fatalf("Fetch = %q", v)
	}
	if moved {
		return false
	}
	if want := map[string]string{"k1": "fetched", "k2": "v-k2"}; !maps.Equal(gotA, want) {
		t.Errorf("first FetchMany = %v, want %v", gotA, want)
	}
	if want := map[string]string{"k2": "v-k2", "k3": "v-k3"}; !maps.Equal(gotB, want) {
		t.Errorf("second FetchMany = %v, want %v", gotB, want)
	}
	if got := a.keys(); !slices.EqualFunc(got, [][]string{{"k2"}}, slices.Equal) {
		t.Errorf("first FetchMany loaded %v, want [[k2]]", got)
	}
	if got := b.keys(); !slices.EqualFunc(got, [][]string{{"k3"}}, slices.Equal) {
		t.Errorf("second FetchMany loaded %v, want [[k3]]", got)
	}
	return true
}

// TestFetchMany_FailSafe: keys past their TTL but within the fail-safe
// window answer stale when the loader fails, and are not loaded again
// within the throttle; a key with nothing to fall back on is reported.
func TestFetchMany_FailSafe(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		clk := newFakeClock()
		c := newCache(t, topo, func(o *Options) {
			o.Now, o.Logger = clk.Now, slog.New(slog.DiscardHandler)
			o.FailSafe = FailSafeOptions{MaxDuration: time.Hour, Throttle: 10 * time.Second}
		})
		ok := &batchRecorder{}
		if _, err := FetchMany(ctx, c, []string{"a", "b"}, ok.load, WithTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Minute)
		failing := &batchRecorder{err: errors.New("database down")}
		got, err := FetchMany(ctx, c, []string{"a", "b", "c"}, failing.load, WithTTL(time.Minute))
		if want := map[string]string{"a": "v-a", "b": "v-b"}; !maps.Equal(got, want) {
			t.Fatalf("with the loader failing: %v, want the stale %v", got, want)
		}
		if err == nil || !errors.Is(err, failing.err) {
			t.Fatalf("err = %v, want the loader's error for c", err)
		}
		if calls := failing.keys(); len(calls) != 1 || !slices.Equal(calls[0], []string{"a", "b", "c"}) {
			t.Fatalf("loader calls %v, want one call for a, b, c", calls)
		}
		// Within the throttle, stale answers need no loader call.
		got, err = FetchMany(ctx, c, []string{"a", "b"}, failing.load, WithTTL(time.Minute))
		if err != nil || len(got) != 2 || len(failing.keys()) != 1 {
			t.Fatalf("within the throttle: %v, %v, %d loader calls; want 2 stale values and no new call", got, err, len(failing.keys()))
		}
		// Stale answers are counted as stale, not as L1 hits: the two of
		// the failed load, the two within the throttle, and a Lookup's.
		var v string
		if res, err := c.Lookup(ctx, "a", &v); err != nil || res.Source != SourceStale || v != "v-a" {
			t.Fatalf("Lookup within the throttle: %q, %v, %v; want the stale value flagged stale", v, res.Source, err)
		}
		cs := c.Counters()
		if cs.StaleServed != 5 {
			t.Errorf("StaleServed = %d, want 5", cs.StaleServed)
		}
		if got := cs.Requests[OpFetchMany][ResultStale]; got != 4 {
			t.Errorf("Requests[fetch_many][stale] = %d, want 4 (the failed load's two and the two within the throttle)", got)
		}
		if get := cs.Requests[OpGet]; get[ResultStale] != 1 || get[ResultHitL1] != 0 {
			t.Errorf("Requests[get] = %v, want one stale answer and no L1 hit", get)
		}
	})
}

// TestFetchMany_Timeouts: on the soft timeout, keys with a stale value
// answer at once and the loader's result is cached when it comes; the
// hard timeout ends the loader call.
func TestFetchMany_Timeouts(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		clk := newFakeClock()
		c := newCache(t, topo, func(o *Options) {
			o.Now, o.Logger = clk.Now, slog.New(slog.DiscardHandler)
			o.FailSafe = FailSafeOptions{MaxDuration: time.Hour}
			o.LoaderSoftTimeout, o.LoaderHardTimeout = 50*time.Millisecond, 300*time.Millisecond
		})
		if _, err := FetchMany(ctx, c, []string{"a", "b"}, (&batchRecorder{}).load, WithTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		clk.Advance(2 * time.Minute)
		slow := &batchRecorder{gate: releaser(t), prefix: "new-"}
		got, err := FetchMany(ctx, c, []string{"a", "b"}, slow.load, WithTTL(time.Minute))
		if want := map[string]string{"a": "v-a", "b": "v-b"}; err != nil || !maps.Equal(got, want) {
			t.Fatalf("soft timeout: %v, %v; want the stale %v", got, err, want)
		}
		slow.gate.open()
		eventually(t, 5*time.Second, "the late load cached", func() error {
			got, err := FetchMany(ctx, c, []string{"a", "b"}, slow.load)
			if want := map[string]string{"a": "new-v-a", "b": "new-v-b"}; err != nil || !maps.Equal(got, want) {
				return fmt.Errorf("%v, %v", got, err)
			}
			return nil
		})
		// Nothing stale to answer with: the hard timeout ends the call.
		stuck := &batchRecorder{gate: releaser(t)}
		_, err = FetchMany(ctx, c, []string{"cold"}, stuck.load)
		if !errors.Is(err, ErrLoaderTimeout) {
			t.Fatalf("hard timeout: %v, want ErrLoaderTimeout", err)
		}
	})
}

// TestFetchMany_EagerRefresh: hits past the threshold start one background
// batch load, and no caller waits for it.
func TestFetchMany_EagerRefresh(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		clk := newFakeClock()
		c := newCache(t, topo, func(o *Options) { o.Now, o.EagerRefreshThreshold = clk.Now, 0.5 })
		if _, err := FetchMany(ctx, c, []string{"a", "b"}, (&batchRecorder{}).load, WithTTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
		clk.Advance(40 * time.Second)
		r := &batchRecorder{gate: releaser(t), prefix: "new-"}
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				got, err := FetchMany(ctx, c, []string{"a", "b"}, r.load, WithTTL(time.Minute))
				if want := map[string]string{"a": "v-a", "b": "v-b"}; err != nil || !maps.Equal(got, want) {
					t.Errorf("got %v, %v; want the current %v", got, err, want)
				}
			})
		}
		wg.Wait() // returns while the refresh is blocked
		eventually(t, 5*time.Second, "one background load", func() error {
			if len(r.keys()) == 0 {
				return errors.New("not started")
			}
			return nil
		})
		r.gate.open()
		eventually(t, 5*time.Second, "refreshed values", func() error {
			got, err := FetchMany(ctx, c, []string{"a", "b"}, r.load)
			if want := map[string]string{"a": "new-v-a", "b": "new-v-b"}; err != nil || !maps.Equal(got, want) {
				return fmt.Errorf("%v, %v", got, err)
			}
			return nil
		})
		if calls := r.keys(); len(calls) != 1 || !slices.Equal(calls[0], []string{"a", "b"}) {
			t.Fatalf("loader calls %v, want one for a and b", calls)
		}
	})
}

// TestFetchMany_FleetLock: 4 instances × 10 goroutines FetchMany the same
// cold keys: with the lock, each key is loaded once across the fleet.
func TestFetchMany_FleetLock(t *testing.T) {
	for _, topo := range []string{"standalone", "cluster"} {
		t.Run(topo, func(t *testing.T) {
			ctx := context.Background()
			first := newCache(t, topo, func(o *Options) { o.Lock.Enabled = true })
			fleet := []*Cache{first, peer(t, first, func(o *Options) { o.Lock.Enabled = true }),
				peer(t, first, func(o *Options) { o.Lock.Enabled = true }), peer(t, first, func(o *Options) { o.Lock.Enabled = true })}
			keys := []string{"a", "b", "c", "d", "e"}
			var mu sync.Mutex
			loads := map[string]int{}
			load := func(_ context.Context, ks []string) (map[string]string, error) {
				mu.Lock()
				for _, k := range ks {
					loads[k]++
				}
				mu.Unlock()
				time.Sleep(50 * time.Millisecond) // the loader's own latency
				out := map[string]string{}
				for _, k := range ks {
					out[k] = "v-" + k
				}
				return out, nil
			}
			var wg sync.WaitGroup
			for _, c := range fleet {
				for range 10 {
					wg.Go(func() {
						got, err := FetchMany(ctx, c, keys, load)
						if err != nil || len(got) != len(keys) {
							t.Errorf("FetchMany: %v, %v", got, err)
						}
					})
				}
			}
			wg.Wait()
			for _, k := range keys {
				if loads[k] != 1 {
					t.Errorf("key %s loaded %d times across the fleet, want 1 (all: %v)", k, loads[k], loads)
				}
			}
		})
	}
}

// TestFetchMany_L2Unreachable: with Redis gone, the loader still answers
// (graceful degradation), in one call for the keys that miss; when the
// loader fails too, a key the instance holds answers stale (and keeps
// answering for the fail-safe throttle) and the others fail.
func TestFetchMany_L2Unreachable(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	srv := redistest.NewStandalone(t)
	c := newCache(t, "memory", func(o *Options) {
		o.Redis, o.Logger = RedisOptions{Addrs: []string{srv.Addr}}, slog.New(slog.DiscardHandler)
		o.Retries, o.OperationTimeout = -1, 200*time.Millisecond
		o.FailSafe = FailSafeOptions{MaxDuration: time.Hour}
	})
	if _, err := FetchMany(ctx, c, []string{"held"}, (&batchRecorder{}).load); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	failing := &batchRecorder{err: errors.New("database down")}
	eventually(t, 10*time.Second, "a stale answer for held", func() error {
		got, err := FetchMany(ctx, c, []string{"held", "cold"}, failing.load)
		if got["held"] != "v-held" {
			return fmt.Errorf("held = %q (%v), want the value held before Redis went away", got["held"], err)
		}
		if _, ok := got["cold"]; ok || !errors.Is(err, failing.err) {
			return fmt.Errorf("cold: %v, %v; want the loader's error", got, err)
		}
		return nil
	})
	// The loader works again: cold is loaded. held keeps its stale value
	// for the fail-safe throttle, without a loader call, unless the
	// throttle copy was not kept (a link reset between the failed load
	// and its copy leaves L1 unchanged): then it is loaded too, in the
	// same call.
	r := &batchRecorder{prefix: "new-"}
	got, err := FetchMany(ctx, c, []string{"held", "cold"}, r.load)
	if err != nil || got["cold"] != "new-v-cold" || (got["held"] != "v-held" && got["held"] != "new-v-held") {
		t.Fatalf("with a working loader: %v, %v", got, err)
	}
	want := []string{"cold"}
	if got["held"] == "new-v-held" {
		want = []string{"cold", "held"}
	}
	if ks := r.keys(); len(ks) != 1 || !slices.Equal(ks[0], want) {
		t.Fatalf("loader calls %v, want one for %v", ks, want)
	}
}
