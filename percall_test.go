package tiercache

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestPerCall_SkipL1: a write with SkipL1 leaves nothing in the writer's
// L1, and a Fetch with SkipL1 answers from L2 even when L1 holds the key.
func TestPerCall_SkipL1(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		if err := c.Set(ctx, "skipped", 1, SkipL1()); err != nil {
			t.Fatal(err)
		}
		if v, src := lookupInt(t, c, "skipped"); v != 1 || src != SourceL2 {
			t.Fatalf("after Set with SkipL1: %d from %v, want 1 from L2", v, src)
		}
		if err := c.Set(ctx, "kept", 2); err != nil {
			t.Fatal(err)
		}
		load := func(context.Context, string) (int, error) { return 0, errors.New("not called") }
		v, res, err := FetchResult(ctx, c, "kept", load, SkipL1())
		if err != nil || v != 2 || res.Source != SourceL2 {
			t.Fatalf("FetchResult with SkipL1: %d, %v, %v; want 2 from L2", v, res.Source, err)
		}
		got, err := FetchMany(ctx, c, []string{"kept", "new"}, func(_ context.Context, keys []string) (map[string]int, error) {
			return map[string]int{"new": 3}, nil
		}, SkipL1())
		if err != nil || got["kept"] != 2 || got["new"] != 3 {
			t.Fatalf("FetchMany with SkipL1: %v, %v", got, err)
		}
		if v, src := lookupInt(t, c, "new"); v != 3 || src != SourceL2 {
			t.Fatalf("a key loaded with SkipL1: %d from %v, want 3 from L2", v, src)
		}
	})
}

// TestPerCall_L1TTL: WithL1TTL bounds how long the writer's L1 keeps the
// value; L2 keeps it for its TTL.
func TestPerCall_L1TTL(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		clk := newFakeClock()
		c := newCache(t, topo, func(o *Options) { o.Now = clk.Now })
		if err := c.Set(ctx, "short", 1, WithTTL(time.Hour), WithL1TTL(time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := c.Set(ctx, "long", 2, WithTTL(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if _, src := lookupInt(t, c, "short"); src != SourceL1 {
			t.Fatalf("short before its L1 TTL: from %v, want L1", src)
		}
		clk.Advance(2 * time.Second)
		if v, src := lookupInt(t, c, "short"); v != 1 || src != SourceL2 {
			t.Fatalf("short after its L1 TTL: %d from %v, want 1 from L2", v, src)
		}
		if _, src := lookupInt(t, c, "long"); src != SourceL1 {
			t.Fatalf("long: from %v, want L1", src)
		}
	})
}

// TestPerCall_AdaptLoad: a loader sets the TTL and tags of what it
// returns, for Fetch and FetchMany.
func TestPerCall_AdaptLoad(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		if AdaptLoad(ctx, WithTTL(time.Second)) {
			t.Fatal("AdaptLoad outside a loader reported true")
		}
		_, res, err := FetchResult(ctx, c, "one", func(ctx context.Context, _ string) (int, error) {
			if !AdaptLoad(ctx, WithTTL(90*time.Second), WithTags("decided")) {
				t.Error("AdaptLoad in a loader reported false")
			}
			if AdaptLoad(ctx, IfAbsent()) {
				t.Error("AdaptLoad accepted IfAbsent")
			}
			return 1, nil
		}, WithTTL(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if ttl := res.ExpiresAt.Sub(res.CreatedAt); ttl != 90*time.Second {
			t.Fatalf("TTL of the loaded value %v, want the loader's 90s", ttl)
		}
		if _, err := FetchMany(ctx, c, []string{"a", "b"}, func(ctx context.Context, keys []string) (map[string]int, error) {
			AdaptLoad(ctx, WithTags("decided"))
			return map[string]int{"a": 1, "b": 2}, nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := c.InvalidateTags(ctx, "decided"); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"one", "a", "b"} {
			if _, err := getInt(c, k); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s after invalidating the loader's tag: %v, want ErrNotFound", k, err)
			}
		}
	})
}
