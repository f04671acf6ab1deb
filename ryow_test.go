package tiercache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// lookupInt reads key from c and reports where the answer came from.
func lookupInt(t *testing.T, c *Cache, key string) (int, Source) {
	t.Helper()
	var v int
	res, err := c.Lookup(context.Background(), key, &v)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", key, err)
	}
	return v, res.Source
}

// TestReadYourOwnWrites: after Set, SetMany and a load by Fetch or
// FetchMany, the writer's next read is answered by its L1; a change made
// afterwards by another instance or by a plain Redis client still reaches
// that L1.
func TestReadYourOwnWrites(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		w := newCache(t, topo)
		other := peer(t, w)

		if err := w.Set(ctx, "set", 1); err != nil {
			t.Fatal(err)
		}
		if err := w.SetMany(ctx, map[string]any{"many1": 2, "many2": 3}); err != nil {
			t.Fatal(err)
		}
		if _, err := Fetch(ctx, w, "fetch", func(context.Context, string) (int, error) { return 4, nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := FetchMany(ctx, w, []string{"fm1", "fm2"}, func(_ context.Context, keys []string) (map[string]int, error) {
			return map[string]int{"fm1": 5, "fm2": 6}, nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := w.Set(ctx, "tagged", 7, WithTags("g")); err != nil {
			t.Fatal(err)
		}
		want := map[string]int{"set": 1, "many1": 2, "many2": 3, "fetch": 4, "fm1": 5, "fm2": 6, "tagged": 7}
		for k, v := range want {
			got, src := lookupInt(t, w, k)
			if got != v || src != SourceL1 {
				t.Errorf("%s: read %d from %v after the writer's own write, want %d from L1", k, got, src, v)
			}
		}

		gone := func(key string) {
			t.Helper()
			eventually(t, 2*time.Second, "writer drops "+key, func() error {
				if v, err := getInt(w, key); !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("still reads %d, %v", v, err)
				}
				return nil
			})
		}
		// Another instance writes, deletes and invalidates.
		if err := other.Set(ctx, "set", 10); err != nil {
			t.Fatal(err)
		}
		eventually(t, 2*time.Second, "writer sees the other instance's write", func() error {
			if v, err := getInt(w, "set"); err != nil || v != 10 {
				return fmt.Errorf("reads %d, %v", v, err)
			}
			return nil
		})
		if err := other.Delete(ctx, "many1"); err != nil {
			t.Fatal(err)
		}
		gone("many1")
		if err := other.InvalidateTags(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		gone("tagged")
		if topo == "memory" {
			return
		}
		// A plain Redis client.
		rawDo(t, topo, "DEL", w.prefix+"many2")
		gone("many2")
		rawDo(t, topo, "PEXPIRE", w.prefix+"fetch", "1")
		gone("fetch")
	})
}

// TestReadYourOwnWrites_RacingWriters: two instances write the same keys
// at once; when they stop, the writer's L1 must agree with Redis. An L1
// copy kept without the server tracking it would keep the writer's value
// after the other instance's later write, forever.
func TestReadYourOwnWrites_RacingWriters(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		a := newCache(t, topo)
		b := peer(t, a)
		truth := peer(t, a, func(o *Options) { o.L1.Disabled = true })
		const keys, rounds = 8, 200
		var wg sync.WaitGroup
		for i, c := range []*Cache{a, b} {
			wg.Go(func() {
				for r := range rounds {
					k := fmt.Sprint("k", r%keys)
					v := r*2 + i
					var err error
					if r%5 == 0 {
						err = c.SetMany(ctx, map[string]any{k: v, fmt.Sprint("k", (r+1)%keys): v})
					} else {
						err = c.Set(ctx, k, v)
					}
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = getInt(c, k) // fill L1 by reads too
				}
			})
		}
		wg.Wait()
		for i := range keys {
			k := fmt.Sprint("k", i)
			want, err := getInt(truth, k)
			if err != nil {
				t.Fatal(err)
			}
			for name, c := range map[string]*Cache{"a": a, "b": b} {
				eventually(t, 2*time.Second, name+" agrees with Redis on "+k, func() error {
					if v, err := getInt(c, k); err != nil || v != want {
						return fmt.Errorf("reads %d, %v; Redis holds %d", v, err, want)
					}
					return nil
				})
			}
		}
	})
}
