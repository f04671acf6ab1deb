package tiercache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// peer returns a second cache on the same namespace and L2 as c: another
// instance of the same application.
func peer(t *testing.T, c *Cache, mod ...func(*Options)) *Cache {
	t.Helper()
	o := Options{Namespace: c.opts.Namespace, Redis: c.opts.Redis}
	for _, m := range mod {
		m(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if !c.opts.Redis.enabled() {
		p.shareMemory(c)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %v", what, err, d)
		}
		time.Sleep(time.Millisecond)
	}
}

func getInt(c *Cache, key string) (int, error) {
	var v int
	err := c.Get(context.Background(), key, &v)
	return v, err
}

func TestCache_InvalidateTags(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		for _, l1 := range []bool{true, false} {
			t.Run(fmt.Sprintf("l1=%v", l1), func(t *testing.T) {
				ctx := context.Background()
				c := newCache(t, topo, func(o *Options) { o.L1.Disabled = !l1 })
				entries := map[string][]string{
					"none": nil, "a": {"a"}, "b": {"b"}, "ab": {"a", "b"}, "ac": {"a", "c"}, "cb": {"c", "b"},
				}
				for k, tags := range entries {
					if err := c.Set(ctx, k, 1, WithTags(tags...)); err != nil {
						t.Fatal(err)
					}
					if _, err := getInt(c, k); err != nil { // fill L1
						t.Fatal(err)
					}
				}
				if err := c.InvalidateTags(ctx, "a"); err != nil {
					t.Fatal(err)
				}
				for k, want := range map[string]bool{"none": true, "a": false, "b": true, "ab": false, "ac": false, "cb": true} {
					_, err := getInt(c, k)
					if got := err == nil; got != want {
						t.Errorf("after invalidating a, %s present=%v (err %v), want %v", k, got, err, want)
					}
				}
				// Two tags at once, then rewriting brings entries back.
				if err := c.InvalidateTags(ctx, "b", "c"); err != nil {
					t.Fatal(err)
				}
				for _, k := range []string{"b", "cb"} {
					if _, err := getInt(c, k); !errors.Is(err, ErrNotFound) {
						t.Errorf("%s survived InvalidateTags(b, c): %v", k, err)
					}
				}
				if err := c.Set(ctx, "ab", 2, WithTags("a", "b")); err != nil {
					t.Fatal(err)
				}
				if v, err := getInt(c, "ab"); err != nil || v != 2 {
					t.Fatalf("rewritten entry: %d %v", v, err)
				}
				// Fetch and SetMany carry tags too.
				n, err := Fetch(ctx, c, "fetched", func(context.Context, string) (int, error) { return 5, nil }, WithTags("f"))
				if err != nil || n != 5 {
					t.Fatal(n, err)
				}
				if err := c.SetMany(ctx, map[string]any{"m1": 1, "m2": 2}, WithTags("f")); err != nil {
					t.Fatal(err)
				}
				if err := c.InvalidateTags(ctx, "f"); err != nil {
					t.Fatal(err)
				}
				got := map[string]int{}
				if err := c.GetMany(ctx, []string{"fetched", "m1", "m2", "none"}, got); err != nil || len(got) != 1 {
					t.Fatalf("after invalidating f: %v %v", got, err)
				}
				if c.Counters().TagBumps != 4 {
					t.Fatalf("TagBumps = %d, want 4", c.Counters().TagBumps)
				}
			})
		}
	})
}

func TestCache_InvalidateTags_SeenByPeers(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		a := newCache(t, topo)
		b := peer(t, a)
		for i := range 50 {
			if err := a.Set(ctx, fmt.Sprint("k", i), i, WithTags("group", fmt.Sprint("own", i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Set(ctx, "other", 1, WithTags("unrelated")); err != nil {
			t.Fatal(err)
		}
		for i := range 50 { // b holds them all in L1
			if _, err := getInt(b, fmt.Sprint("k", i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.InvalidateTags(ctx, "group"); err != nil {
			t.Fatal(err)
		}
		for i := range 50 {
			k := fmt.Sprint("k", i)
			if _, err := getInt(a, k); !errors.Is(err, ErrNotFound) {
				t.Fatalf("the invalidating instance still serves %s: %v", k, err)
			}
			eventually(t, 2*time.Second, "peer sees invalidation of "+k, func() error {
				if v, err := getInt(b, k); err == nil {
					return fmt.Errorf("served %d", v)
				}
				return nil
			})
		}
		if _, err := getInt(b, "other"); err != nil {
			t.Fatalf("unrelated tag invalidated: %v", err)
		}
	})
}

func TestCache_Clear(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		p := peer(t, c)
		other := newCache(t, topo) // another namespace on the same L2
		if topo == "memory" {
			other.shareMemory(c)
		}
		for i := range 20 {
			k := fmt.Sprint("k", i)
			if err := c.Set(ctx, k, i); err != nil {
				t.Fatal(err)
			}
			if err := other.Set(ctx, k, i); err != nil {
				t.Fatal(err)
			}
			if _, err := getInt(p, k); err != nil {
				t.Fatal(err)
			}
		}
		unrelated := "unrelated-" + c.Namespace()
		if topo == "production" { // beyond the tiercache user's keys
			rawDo(t, topo, "SET", unrelated, "x", "PX", "60000")
		} else if err := c.store.Set(ctx, unrelated, []byte("x"), time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := c.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			k := fmt.Sprint("k", i)
			if _, err := getInt(c, k); !errors.Is(err, ErrNotFound) {
				t.Fatalf("%s survived Clear: %v", k, err)
			}
			eventually(t, 2*time.Second, "peer sees Clear", func() error {
				if v, err := getInt(p, k); err == nil {
					return fmt.Errorf("served %d", v)
				}
				return nil
			})
			if v, err := getInt(other, k); err != nil || v != i {
				t.Fatalf("another namespace lost %s: %v", k, err)
			}
		}
		if topo == "production" {
			if n := rawDo(t, topo, "EXISTS", unrelated); n != int64(1) {
				t.Fatalf("a key outside the namespace was removed: EXISTS = %v", n)
			}
		} else if _, err := c.store.Get(ctx, unrelated); err != nil {
			t.Fatalf("a key outside the namespace was removed: %v", err)
		}
		// The namespace works normally afterwards.
		if err := c.Set(ctx, "k0", 42); err != nil {
			t.Fatal(err)
		}
		if v, err := getInt(c, "k0"); err != nil || v != 42 {
			t.Fatalf("after Clear: %d %v", v, err)
		}
	})
}

// TestCache_InvalidateTags_RacingSet pins down the outcome of an
// invalidation racing writes: every entry a reader can see after
// InvalidateTags returns was written by a Set that had not completed when
// InvalidateTags started. Sets that completed before are always gone;
// Sets in flight may survive, and then only because they read the new tag
// version.
func TestCache_InvalidateTags_RacingSet(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		w := newCache(t, topo)
		r := peer(t, w)
		var (
			completed atomic.Int64 // highest value whose Set returned
			stop      = make(chan struct{})
			wg        sync.WaitGroup
		)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := w.Set(ctx, "raced", i, WithTags("t")); err != nil {
					t.Error(err)
					return
				}
				completed.Store(i)
			}
		}()
		for round := range 30 {
			before := completed.Load()
			if err := w.InvalidateTags(ctx, "t"); err != nil {
				t.Fatal(err)
			}
			for _, c := range []*Cache{w, r} {
				v, err := getInt(c, "raced")
				if err == nil && int64(v) <= before && c == w {
					t.Fatalf("round %d: the invalidating instance read %d, written before the invalidation (<= %d)", round, v, before)
				}
				if err != nil && !errors.Is(err, ErrNotFound) {
					t.Fatal(err)
				}
			}
			// The peer converges within the invalidation delay.
			eventually(t, 2*time.Second, "peer drops pre-invalidation writes", func() error {
				v, err := getInt(r, "raced")
				if err == nil && int64(v) <= before {
					return fmt.Errorf("read %d <= %d", v, before)
				}
				return nil
			})
		}
		close(stop)
		wg.Wait()
	})
}

func TestCache_TagsBadInput(t *testing.T) {
	ctx := context.Background()
	c := newCache(t, "memory")
	long := string(make([]byte, 2000))
	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprint("t", i)
	}
	for name, err := range map[string]error{
		"empty tag":     c.InvalidateTags(ctx, ""),
		"long tag":      c.InvalidateTags(ctx, long),
		"set long tag":  c.Set(ctx, "k", 1, WithTags(long)),
		"set many tags": c.Set(ctx, "k", 1, WithTags(many...)),
		"setmany bad":   c.SetMany(ctx, map[string]any{"k": 1}, WithTags("")),
	} {
		if !errors.Is(err, ErrInvalidTag) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := getInt(c, "k"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a rejected write was stored: %v", err)
	}
}

// TestFetch_AfterInvalidation checks that Fetch, whose L1 hit path is
// separate from Get's, also stops serving invalidated entries.
func TestFetch_AfterInvalidation(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		var calls atomic.Int32
		load := func(context.Context, string) (int, error) { return int(calls.Add(1)), nil }
		fetch := func() int {
			t.Helper()
			v, err := Fetch(ctx, c, "f", load, WithTags("t"))
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
		for range 3 {
			if fetch() != 1 {
				t.Fatal("cached value not reused")
			}
		}
		if err := c.InvalidateTags(ctx, "t"); err != nil {
			t.Fatal(err)
		}
		if v := fetch(); v != 2 {
			t.Fatalf("after InvalidateTags, Fetch returned %d, want a reload (2)", v)
		}
		if err := c.Clear(ctx); err != nil {
			t.Fatal(err)
		}
		if v := fetch(); v != 3 {
			t.Fatalf("after Clear, Fetch returned %d, want a reload (3)", v)
		}
	})
}

// TestVersions_LostNamespaceVersion: the namespace's version key vanishes
// from Redis (a failover that lost it, an operator's DEL). A reader that
// looks while it is missing, before a writer recreates it, finds the
// entries it reads invalid; once the writer has recreated the key and
// written again, the reader serves the writer's value: recreating the key
// invalidates the reader's copy of the missing version.
func TestVersions_LostNamespaceVersion(t *testing.T) {
	for _, topo := range topologies[1:] { // every topology on Redis
		t.Run(topo, func(t *testing.T) {
			ctx := context.Background()
			reader := newCache(t, topo)
			writer := peer(t, reader, func(o *Options) { o.L1.Disabled = true })
			if err := writer.Set(ctx, "k", 1); err != nil {
				t.Fatal(err)
			}
			if v, err := getInt(reader, "k"); err != nil || v != 1 {
				t.Fatalf("first read: %d %v", v, err)
			}
			rawDo(t, topo, "DEL", reader.vers.nsKey)
			// The reader learns of the deletion, then reads while the key
			// is missing: the entry, stamped with the lost version, is
			// not valid.
			eventually(t, 5*time.Second, "reader sees the lost version", func() error {
				if _, err := getInt(reader, "k"); !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("read %v, want not found", err)
				}
				return nil
			})
			if err := writer.Set(ctx, "k", 2); err != nil { // recreates the version key
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "reader serves the new write", func() error {
				if v, err := getInt(reader, "k"); err != nil || v != 2 {
					return fmt.Errorf("read %d %v", v, err)
				}
				return nil
			})
		})
	}
}
