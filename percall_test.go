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

// TestPerCall_SkipL2: a Set, SetMany or Fetch with SkipL2 keeps its value
// in the caller's L1 only: the caller reads it from L1, another instance
// does not see it, and a tag invalidation from that instance still
// removes it. SetMany honours SkipL1 too. Calls where SkipL2 cannot apply
// are refused.
func TestPerCall_SkipL2(t *testing.T) {
	eachTopology(t, func(t *testing.T, topo string) {
		ctx := context.Background()
		c := newCache(t, topo)
		other := peer(t, c)
		if err := c.Set(ctx, "local", 1, SkipL2(), WithTags("g")); err != nil {
			t.Fatal(err)
		}
		if err := c.SetMany(ctx, map[string]any{"m1": 2, "m2": 3}, SkipL2()); err != nil {
			t.Fatal(err)
		}
		calls := 0
		load := func(context.Context, string) (int, error) { calls++; return 4, nil }
		for range 2 {
			if v, err := Fetch(ctx, c, "loaded", load, SkipL2()); err != nil || v != 4 {
				t.Fatalf("Fetch with SkipL2: %d, %v", v, err)
			}
		}
		if calls != 1 {
			t.Fatalf("loader called %d times for two Fetches, want 1 (the second from L1)", calls)
		}
		for k, want := range map[string]int{"local": 1, "m1": 2, "m2": 3, "loaded": 4} {
			if v, src := lookupInt(t, c, k); v != want || src != SourceL1 {
				t.Errorf("%s: %d from %v, want %d from L1", k, v, src, want)
			}
			if v, err := getInt(other, k); !errors.Is(err, ErrNotFound) {
				t.Errorf("%s reached another instance (L2): %d, %v", k, v, err)
			}
		}
		if err := other.InvalidateTags(ctx, "g"); err != nil {
			t.Fatal(err)
		}
		missedBy(t, c, "local")

		// SetMany honours SkipL1 as Set does.
		if err := c.SetMany(ctx, map[string]any{"s1": 5}, SkipL1()); err != nil {
			t.Fatal(err)
		}
		if v, src := lookupInt(t, c, "s1"); v != 5 || src != SourceL2 {
			t.Fatalf("after SetMany with SkipL1: %d from %v, want 5 from L2", v, src)
		}

		noL1 := newCache(t, topo, func(o *Options) { o.L1.Disabled = true })
		for name, err := range map[string]error{
			"SkipL1 and SkipL2": c.Set(ctx, "x", 1, SkipL1(), SkipL2()),
			"IfAbsent":          c.Set(ctx, "x", 1, IfAbsent(), SkipL2()),
			"without L1":        noL1.Set(ctx, "x", 1, SkipL2()),
			"SetMany SkipL1+L2": c.SetMany(ctx, map[string]any{"x": 1}, SkipL1(), SkipL2()),
		} {
			if !errors.Is(err, ErrInvalidOptions) {
				t.Errorf("%s: %v, want ErrInvalidOptions", name, err)
			}
		}
		if _, err := Fetch(ctx, noL1, "x", load, SkipL2()); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Fetch without L1: %v, want ErrInvalidOptions", err)
		}
		if _, err := FetchMany(ctx, c, []string{"x"}, func(context.Context, []string) (map[string]int, error) { return nil, nil }, SkipL2()); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("FetchMany: %v, want ErrInvalidOptions", err)
		}
		if v, err := getInt(c, "x"); !errors.Is(err, ErrNotFound) {
			t.Errorf("a refused call wrote x: %d, %v", v, err)
		}
	})
}
