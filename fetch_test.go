package tiercache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

func TestFetch(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		var calls atomic.Int32
		load := func(_ context.Context, key string) (user, error) {
			calls.Add(1)
			return user{ID: 7, Name: key}, nil
		}
		for i := range 3 {
			u, res, err := FetchResult(ctx, c, "user:7", load)
			if err != nil || u.Name != "user:7" {
				t.Fatalf("fetch %d: %+v %v", i, u, err)
			}
			if i == 0 && res.Source != SourceLoader {
				t.Fatalf("first fetch from %v", res.Source)
			}
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("loader called %d times, want 1", n)
		}
		// The loaded value is in L2 for other readers.
		var u user
		if err := c.Get(ctx, "user:7", &u); err != nil || u.ID != 7 {
			t.Fatalf("loaded value not cached: %v", err)
		}

		// A loader error is returned and nothing is cached.
		boom := errors.New("db down")
		if _, err := Fetch(ctx, c, "err", func(context.Context, string) (int, error) { return 0, boom }); !errors.Is(err, boom) {
			t.Fatalf("loader error: %v", err)
		}
		if err := c.Get(ctx, "err", new(int)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("failed load was cached: %v", err)
		}
		// A panic becomes an error.
		_, err := Fetch(ctx, c, "panic", func(context.Context, string) (int, error) { panic("kaboom") })
		var pe *LoaderPanicError
		if !errors.As(err, &pe) || pe.Value != "kaboom" {
			t.Fatalf("loader panic: %v", err)
		}
	})
}

func TestFetch_Stampede(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		for _, l1 := range []bool{true, false} {
			t.Run(fmt.Sprintf("l1=%v", l1), func(t *testing.T) {
				ctx := context.Background()
				c := newCache(t, topo, func(o *Options) { o.L1.Disabled = !l1 })
				const n = 1000
				var (
					calls   atomic.Int32
					started sync.WaitGroup
					release = make(chan struct{})
				)
				load := func(context.Context, string) (int, error) {
					calls.Add(1)
					<-release // hold the flight open while the others pile up
					return 99, nil
				}
				started.Add(n)
				errs := make(chan error, n)
				for range n {
					go func() {
						started.Done()
						v, err := Fetch(ctx, c, "cold", load)
						if err == nil && v != 99 {
							err = fmt.Errorf("got %d", v)
						}
						errs <- err
					}()
				}
				started.Wait()
				close(release)
				for range n {
					if err := <-errs; err != nil {
						t.Fatal(err)
					}
				}
				if got := calls.Load(); got != 1 {
					t.Fatalf("%d goroutines called the loader %d times, want 1", n, got)
				}
			})
		}
	})
}

func TestFetch_Negative(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		clk := newFakeClock()
		c := newCache(t, topo, func(o *Options) { o.Now = clk.Now; o.NegativeTTL = time.Minute })
		var calls atomic.Int32
		load := func(context.Context, string) (user, error) {
			calls.Add(1)
			return user{}, fmt.Errorf("no such user: %w", ErrNotFound)
		}
		for i := range 3 {
			if _, err := Fetch(ctx, c, "user:404", load); !errors.Is(err, ErrNotFound) {
				t.Fatalf("fetch %d: %v", i, err)
			}
		}
		if n := calls.Load(); n != 1 {
			t.Fatalf("loader called %d times within NegativeTTL, want 1", n)
		}
		var u user
		if err := c.Get(ctx, "user:404", &u); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of a negative entry: %v", err)
		}
		clk.Advance(2 * time.Minute)
		if _, err := Fetch(ctx, c, "user:404", load); !errors.Is(err, ErrNotFound) {
			t.Fatal(err)
		}
		if n := calls.Load(); n != 2 {
			t.Fatalf("loader called %d times after NegativeTTL, want 2", n)
		}

		// Disabled negative caching calls the loader every time.
		c2 := newCache(t, topo, func(o *Options) { o.NegativeTTL = -1 })
		calls.Store(0)
		for range 3 {
			_, _ = Fetch(ctx, c2, "user:404", load)
		}
		if n := calls.Load(); n != 3 {
			t.Fatalf("with negative caching off the loader ran %d times, want 3", n)
		}
	})
}

func TestFetchMany(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		if err := c.SetMany(ctx, map[string]any{"u:1": user{ID: 1}, "u:2": user{ID: 2}}); err != nil {
			t.Fatal(err)
		}
		var asked [][]string
		load := func(_ context.Context, keys []string) (map[string]user, error) {
			asked = append(asked, slices.Sorted(slices.Values(keys)))
			out := map[string]user{}
			for _, k := range keys {
				if k != "u:404" {
					out[k] = user{ID: len(k), Name: k}
				}
			}
			return out, nil
		}
		keys := []string{"u:1", "u:2", "u:3", "u:4", "u:404", "u:3"}
		got, err := FetchMany(ctx, c, keys, load)
		if err != nil {
			t.Fatal(err)
		}
		if len(asked) != 1 || !slices.Equal(asked[0], []string{"u:3", "u:4", "u:404"}) {
			t.Fatalf("loader saw %v, want only the missing keys", asked)
		}
		if len(got) != 4 || got["u:1"].ID != 1 || got["u:3"].Name != "u:3" {
			t.Fatalf("result %+v", got)
		}
		if _, ok := got["u:404"]; ok {
			t.Fatal("not-found key in the result")
		}
		// Second call: everything cached, u:404 negatively.
		got, err = FetchMany(ctx, c, keys, load)
		if err != nil || len(got) != 4 {
			t.Fatalf("second call: %v %v", got, err)
		}
		if len(asked) != 1 {
			t.Fatalf("loader called again with %v", asked[1:])
		}
		boom := errors.New("db down")
		if _, err := FetchMany(ctx, c, []string{"x"}, func(context.Context, []string) (map[string]int, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Fatalf("loader error: %v", err)
		}
	})
}

func TestCache_GetManySetMany(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		for _, l1 := range []bool{true, false} {
			t.Run(fmt.Sprintf("l1=%v", l1), func(t *testing.T) {
				c := newCache(t, topo, func(o *Options) { o.L1.Disabled = !l1 })
				const n = 2000 // spread over every slot range of a cluster
				items := make(map[string]any, n)
				keys := make([]string, 0, n+1)
				for i := range n {
					k := fmt.Sprint("many:", i)
					items[k] = i
					keys = append(keys, k)
				}
				if err := c.SetMany(ctx, items, WithTTL(time.Hour)); err != nil {
					t.Fatal(err)
				}
				keys = append(keys, "many:absent")
				for pass := range 2 {
					got := map[string]int{}
					if err := c.GetMany(ctx, keys, &got); err != nil {
						t.Fatal(err)
					}
					if len(got) != n {
						t.Fatalf("pass %d: %d of %d keys", pass, len(got), n)
					}
					for i := range n {
						if got[fmt.Sprint("many:", i)] != i {
							t.Fatalf("pass %d: many:%d = %d", pass, i, got[fmt.Sprint("many:", i)])
						}
					}
				}
				if topo == "cluster" {
					assertSpreadOverMasters(t, c, keys[:n])
				}
				if err := c.Delete(ctx, keys...); err != nil {
					t.Fatal(err)
				}
				got := map[string]int{}
				if err := c.GetMany(ctx, keys, got); err != nil || len(got) != 0 {
					t.Fatalf("after Delete: %d keys, %v", len(got), err)
				}
			})
		}
	})
}

// assertSpreadOverMasters checks that the keys live on every master, so the
// test really crossed slots and nodes.
func assertSpreadOverMasters(t *testing.T, c *Cache, keys []string) {
	t.Helper()
	for _, m := range shared.Get(t, "cluster").Masters() {
		found := false
		for _, k := range keys {
			if n, err := m.Do("EXISTS", c.prefix+k); err == nil && n == int64(1) {
				found = true // a MOVED error means another node owns it
				break
			}
		}
		if !found {
			t.Fatalf("master %s holds none of the keys: they did not spread", m.Addr)
		}
	}
}

// TestFetch_SharedEntryNoRace reads one L1 entry through Fetch, FetchMany
// and Get at once; under -race this catches unsynchronised writes to the
// shared entry.
func TestFetch_SharedEntryNoRace(t *testing.T) {
	ctx := context.Background()
	c := newCache(t, "memory")
	if err := c.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	load := func(context.Context, string) ([]byte, error) { return []byte("loaded"), nil }
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				switch g % 3 {
				case 0:
					if v, err := Fetch(ctx, c, "k", load); err != nil || string(v) != "v" {
						t.Errorf("fetch: %q %v", v, err)
					}
				case 1:
					m, err := FetchMany(ctx, c, []string{"k"}, func(context.Context, []string) (map[string][]byte, error) { return nil, nil })
					if err != nil || string(m["k"]) != "v" {
						t.Errorf("fetch many: %q %v", m["k"], err)
					}
				default:
					var v []byte
					if err := c.Get(ctx, "k", &v); err != nil || string(v) != "v" {
						t.Errorf("get: %q %v", v, err)
					}
				}
			}
		}()
	}
	wg.Wait()
}

// TestCache_ManyRoundTrips checks that GetMany, SetMany and Delete batch
// their keys: behind 100 ms of latency each way, 500 keys one by one would
// take at least 100 s; pipelined, a few round trips.
func TestCache_ManyRoundTrips(t *testing.T) {
	redistest.Require(t)
	srv := redistest.NewStandalone(t)
	px := redistest.NewProxy(t, srv.Addr)
	ctx := context.Background()
	c := newCache(t, "memory", func(o *Options) {
		o.Redis = RedisOptions{Addrs: []string{px.Addr}}
		o.L1.Disabled = true
		o.OperationTimeout = 10 * time.Second
	})
	items := map[string]any{}
	var keys []string
	for i := range 500 {
		k := fmt.Sprint("rt:", i)
		items[k] = i
		keys = append(keys, k)
	}
	if err := c.SetMany(ctx, items); err != nil { // creates the namespace version
		t.Fatal(err)
	}
	if err := px.Latency(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		op   func() error
	}{
		{"SetMany", func() error { return c.SetMany(ctx, items) }},
		{"GetMany", func() error {
			got := map[string]int{}
			if err := c.GetMany(ctx, keys, got); err != nil {
				return err
			}
			if len(got) != len(keys) {
				return fmt.Errorf("%d of %d keys", len(got), len(keys))
			}
			return nil
		}},
		{"Delete", func() error { return c.Delete(ctx, keys...) }},
	} {
		start := time.Now()
		if err := step.op(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		// One round trip is 200 ms here; allow a handful, not 500.
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("%s of 500 keys took %v: not one round trip per node", step.name, d)
		}
	}
}

// TestFetch_NoJoinAcrossInvalidation: a Fetch that starts after this
// instance's Delete, Set, InvalidateTags or Clear returned never joins a
// flight that started before it (and could return what the invalidation
// removed): it reads or loads on its own.
func TestFetch_NoJoinAcrossInvalidation(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		invalidations := map[string]func(ctx context.Context, c *Cache) error{
			"delete": func(ctx context.Context, c *Cache) error { return c.Delete(ctx, "k") },
			"set":    func(ctx context.Context, c *Cache) error { return c.Set(ctx, "k", "set", WithTags("g")) },
			"tags":   func(ctx context.Context, c *Cache) error { return c.InvalidateTags(ctx, "g") },
			"clear":  func(ctx context.Context, c *Cache) error { return c.Clear(ctx) },
		}
		for name, invalidate := range invalidations {
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				c := newCache(t, topo)
				started, release := make(chan struct{}), make(chan struct{})
				first := make(chan error, 1)
				go func() {
					_, err := Fetch(ctx, c, "k", func(context.Context, string) (string, error) {
						close(started)
						<-release
						return "old", nil
					}, WithTags("g"))
					first <- err
				}()
				<-started
				defer close(release)
				if err := invalidate(ctx, c); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				want := "new"
				if name == "set" {
					want = "set"
				}
				// Joining the first flight would block until release.
				cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				got, err := Fetch(cctx, c, "k", func(context.Context, string) (string, error) { return "new", nil }, WithTags("g"))
				if err != nil {
					t.Fatalf("Fetch after %s: %v (it joined the flight that started before)", name, err)
				}
				if got != want {
					t.Fatalf("Fetch after %s = %q, want %q", name, got, want)
				}
			})
		}
	})
}
