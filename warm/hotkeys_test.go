package warm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/tiercache/tiercache"
)

func newHotKeys(t testing.TB, opts HotKeysOptions) *HotKeys {
	t.Helper()
	h, err := NewHotKeys(opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func keysOf(kcs []KeyCount) []string {
	out := make([]string, len(kcs))
	for i, kc := range kcs {
		out[i] = kc.Key
	}
	return out
}

// TestHotKeys_Top feeds a zipf stream over 10,000 keys and compares the
// tracker's top keys with the exact ones.
func TestHotKeys_Top(t *testing.T) {
	t.Parallel()
	h := newHotKeys(t, HotKeysOptions{Size: 20})
	z := rand.NewZipf(rand.New(rand.NewPCG(1, 2)), 1.2, 1, 9999)
	exact := map[string]int{}
	for range 300_000 {
		k := fmt.Sprintf("key:%d", z.Uint64())
		exact[k]++
		h.Observe(k)
	}
	var want []string
	for k := range exact {
		want = append(want, k)
	}
	slices.SortFunc(want, func(a, b string) int { return exact[b] - exact[a] })
	got := keysOf(h.Top(10))
	if !slices.Equal(got[:5], want[:5]) {
		t.Fatalf("top 5 %v, want %v", got[:5], want[:5])
	}
	hits := 0
	for _, k := range got {
		if slices.Contains(want[:10], k) {
			hits++
		}
	}
	if hits < 9 {
		t.Fatalf("top 10 %v has %d of the exact top 10 %v", got, hits, want[:10])
	}
	if n := len(h.Top(0)); n > 20*hotShards {
		t.Fatalf("%d keys tracked, the bound is %d", n, 20*hotShards)
	}
}

// TestHotKeys_Decay: keys that were hot and are no longer fade out, in
// every shard, busy or idle.
func TestHotKeys_Decay(t *testing.T) {
	t.Parallel()
	h := newHotKeys(t, HotKeysOptions{Size: 4, DecayEvery: 400})
	for range 1000 {
		h.Observe("old")
	}
	if got := keysOf(h.Top(1)); !slices.Equal(got, []string{"old"}) {
		t.Fatalf("top %v", got)
	}
	for i := range 4000 {
		h.Observe(fmt.Sprintf("new-%d", i%4))
	}
	got := keysOf(h.Top(0))
	slices.Sort(got)
	if !slices.Equal(got, []string{"new-0", "new-1", "new-2", "new-3"}) {
		t.Fatalf("tracked %v, want only the new keys", h.Top(0))
	}
}

func TestHotKeys_Sample(t *testing.T) {
	t.Parallel()
	h := newHotKeys(t, HotKeysOptions{SampleEvery: 10})
	for i := range 11_000 {
		if i%11 == 0 {
			h.Observe("b")
		} else {
			h.Observe("a")
		}
	}
	top := h.Top(2)
	if len(top) != 2 || top[0].Key != "a" || top[0].Count < 800 || top[0].Count > 1200 || top[1].Key != "b" {
		t.Fatalf("top %v, want a with about 1000 sampled reads, then b", top)
	}
}

func TestHotKeys_Concurrent(t *testing.T) {
	t.Parallel()
	// Decay about every 1000 reads of a shard (40 epochs in the run), so
	// that the counts halve under concurrent adds, while each key still
	// gets about 20 reads an epoch: enough that a halving never empties
	// the tracker, whichever shard decays last.
	h := newHotKeys(t, HotKeysOptions{Size: 8, DecayEvery: 8000})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 5000 {
				h.Observe(fmt.Sprintf("k%d", (i*(g+1))%50))
				if i%500 == 0 {
					_ = h.Top(3)
				}
			}
		})
	}
	wg.Wait()
	if n := len(h.Top(0)); n == 0 || n > 8*hotShards {
		t.Fatalf("%d keys tracked", n)
	}
}

func TestNewHotKeys_Invalid(t *testing.T) {
	t.Parallel()
	if _, err := NewHotKeys(HotKeysOptions{Size: -1}); err == nil {
		t.Fatal("negative size accepted")
	}
	h := newHotKeys(t, HotKeysOptions{})
	c := newCache(t, topology{name: "memory"}, "")
	load := func(context.Context, string) (Item, error) { return Item{}, nil }
	for _, opts := range []RefreshOptions{{Load: load}, {Cache: c}, {Cache: c, Load: load, Within: -time.Second}} {
		if _, err := h.Refresher(opts); err == nil {
			t.Errorf("Refresher(%+v) accepted", opts)
		}
	}
}

// TestHotKeys_Refresher reads some keys often, lets time pass on a fake
// clock shared by the cache and the refresher, and checks that exactly the
// hot keys near expiry (or missing) are reloaded, with their TTL kept.
func TestHotKeys_Refresher(t *testing.T) {
	eachTopology(t, allTopologies, func(t *testing.T, tp topology) {
		ctx := t.Context()
		clk := clockwork.NewFakeClockAt(t0)
		hk := newHotKeys(t, HotKeysOptions{Size: 10})
		c := newCache(t, tp, "", func(o *tiercache.Options) {
			o.Now = clk.Now
			o.OnAccess = hk.Observe
		})
		for _, k := range []string{"hot-1", "hot-2", "cold"} {
			if err := c.Set(ctx, k, "v0", tiercache.WithTTL(2*time.Minute)); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Set(ctx, "hot-long", "v0", tiercache.WithTTL(time.Hour)); err != nil {
			t.Fatal(err)
		}
		for range 20 {
			for _, k := range []string{"hot-1", "hot-2", "hot-missing", "hot-long"} {
				_ = c.Get(ctx, k, new(string))
			}
		}
		_ = c.Get(ctx, "cold", new(string))

		var mu sync.Mutex
		var loaded []string
		gen, err := hk.Refresher(RefreshOptions{Cache: c, Keys: 4, Now: clk.Now, Load: func(_ context.Context, key string) (Item, error) {
			mu.Lock()
			loaded = append(loaded, key)
			mu.Unlock()
			return Item{Value: "fresh-" + key, Tags: []string{"hot"}}, nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		r := newRunner(t, Options{Cache: c, Clock: clk},
			Strategy{Name: "hot-keys", Enabled: true, WarmOnDemand: true, TTL: 5 * time.Minute, Generator: gen})
		before := hk.Top(0)
		clk.Advance(90 * time.Second) // the 2-minute entries expire in 30 s
		res, err := r.Warm(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(loaded)
		if want := []string{"hot-1", "hot-2", "hot-missing"}; !slices.Equal(loaded, want) || res[0].Written != 3 {
			t.Fatalf("loaded %v (result %+v), want %v", loaded, res[0], want)
		}
		if after := hk.Top(0); !slices.Equal(after, before) {
			t.Fatalf("the refresher's own reads were counted: %v, then %v", before, after)
		}
		for key, ttl := range map[string]time.Duration{"hot-1": 2 * time.Minute, "hot-missing": 5 * time.Minute} {
			var v string
			got, err := c.Lookup(ctx, key, &v)
			if err != nil || v != "fresh-"+key || got.ExpiresAt.Sub(clk.Now()) != ttl {
				t.Fatalf("%s: %q expires %v (%v), want in %v", key, v, got.ExpiresAt, err, ttl)
			}
		}
		// Fresh again: a second run reloads nothing.
		loaded = nil
		if res, err := r.Warm(ctx); err != nil || res[0].Written != 0 || len(loaded) != 0 {
			t.Fatalf("second run %+v %v loaded %v", res, err, loaded)
		}
		if err := c.InvalidateTags(ctx, "hot"); err != nil {
			t.Fatal(err)
		}
		wantPresent(t, c, map[string]bool{"hot-1": false, "hot-long": true, "cold": true})
	})
}

func TestHotKeys_RefresherFailures(t *testing.T) {
	t.Parallel()
	hk := newHotKeys(t, HotKeysOptions{})
	c := newCache(t, topology{name: "memory"}, "", func(o *tiercache.Options) { o.OnAccess = hk.Observe })
	for _, k := range []string{"panics", "fails", "gone", "ok"} {
		_ = c.Get(t.Context(), k, new(string))
	}
	errLoad := errors.New("backend down")
	gen, err := hk.Refresher(RefreshOptions{Cache: c, Load: func(_ context.Context, key string) (Item, error) {
		switch key {
		case "panics":
			panic("bad loader")
		case "fails":
			return Item{}, errLoad
		case "gone":
			return Item{}, tiercache.ErrNotFound
		}
		return Item{Value: 1}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	r := newRunner(t, Options{Cache: c}, Strategy{Name: "hot", Enabled: true, WarmOnDemand: true, Generator: gen})
	res, err := r.Warm(t.Context())
	if err != nil || res[0].Written != 1 || res[0].Failed != 2 || res[0].KeyErr == nil {
		t.Fatalf("%+v %v, want 1 written and 2 failed", res, err)
	}
}
