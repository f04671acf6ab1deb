package tiercache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestCache_TryLock(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		a := newCache(t, topo)
		b := peer(t, a)
		la, err := a.TryLock(ctx, "job", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.TryLock(ctx, "job", time.Minute); !errors.Is(err, ErrLocked) {
			t.Fatalf("second holder: %v", err)
		}
		if err := la.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		lb, err := b.TryLock(ctx, "job", time.Minute)
		if err != nil {
			t.Fatalf("after unlock: %v", err)
		}
		// A stale holder's Unlock does not release someone else's lock.
		if err := la.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := a.TryLock(ctx, "job", time.Minute); !errors.Is(err, ErrLocked) {
			t.Fatalf("a stale Unlock released another holder's lock: %v", err)
		}
		_ = lb.Unlock(ctx)
		// A holder that dies blocks no one past the TTL.
		if _, err := a.TryLock(ctx, "short", 50*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "lock expires", func() error {
			l, err := b.TryLock(ctx, "short", time.Minute)
			if err == nil {
				_ = l.Unlock(ctx)
			}
			return err
		})
		// Exclusive under contention.
		var holders, max atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 20 {
					l, err := a.TryLock(ctx, "contended", time.Minute)
					if errors.Is(err, ErrLocked) {
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					if n := holders.Add(1); n > max.Load() {
						max.Store(n)
					}
					holders.Add(-1)
					if err := l.Unlock(ctx); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if max.Load() != 1 {
			t.Fatalf("%d holders at once", max.Load())
		}
	})
}

func TestCache_SetItems(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		clk := newFakeClock()
		c := newCache(t, topo, func(o *Options) { o.Now = clk.Now })
		err := c.SetItems(ctx, []Item{
			{Key: "a", Value: 1, TTL: time.Minute, Tags: []string{"x"}},
			{Key: "b", Value: 2, TTL: time.Hour, Tags: []string{"y", "x"}},
			{Key: "c", Value: []byte("raw")},
		})
		if err != nil {
			t.Fatal(err)
		}
		res, err := c.Lookup(ctx, "a", new(int))
		if err != nil || res.ExpiresAt.Sub(clk.Now()) > time.Minute {
			t.Fatalf("a: %+v %v", res, err)
		}
		res, err = c.Lookup(ctx, "b", new(int))
		if err != nil || res.ExpiresAt.Sub(clk.Now()) < 59*time.Minute {
			t.Fatalf("b: %+v %v", res, err)
		}
		if err := c.InvalidateTags(ctx, "y"); err != nil {
			t.Fatal(err)
		}
		if _, err := getInt(c, "b"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("b survived its tag: %v", err)
		}
		if v, err := getInt(c, "a"); err != nil || v != 1 {
			t.Fatalf("a: %d %v", v, err)
		}
		// A bad item rejects the whole batch.
		err = c.SetItems(ctx, []Item{{Key: "d", Value: 1}, {Key: "", Value: 2}})
		if !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("bad item: %v", err)
		}
		if _, err := getInt(c, "d"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("part of a rejected batch was written: %v", err)
		}
	})
}
