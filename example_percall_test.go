package tiercache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache"
)

// A loader decides the TTL and tags of what it loads: here, a price list
// that the source says is valid for 30 seconds and belongs to a catalogue.
func ExampleAdaptLoad() {
	ctx := context.Background()
	c, err := tiercache.New(tiercache.Options{Namespace: "shop"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	load := func(ctx context.Context, key string) (string, error) {
		tiercache.AdaptLoad(ctx, tiercache.WithTTL(30*time.Second), tiercache.WithTags("catalogue:7"))
		return "12.50 EUR", nil
	}
	_, res, err := tiercache.FetchResult(ctx, c, "price:42", load, tiercache.WithTTL(time.Hour))
	if err != nil {
		panic(err)
	}
	fmt.Println("cached for", res.ExpiresAt.Sub(res.CreatedAt))
	if err := c.InvalidateTags(ctx, "catalogue:7"); err != nil {
		panic(err)
	}
	var price string
	fmt.Println("after the catalogue's invalidation:", c.Get(ctx, "price:42", &price))
	// Output:
	// cached for 30s
	// after the catalogue's invalidation: tiercache: get "price:42": not found
}

// SkipL1 reads one key from the shared tier even when this instance holds
// it; WithL1TTL keeps a written value in this instance for a shorter time
// than in Redis.
func ExampleSkipL1() {
	ctx := context.Background()
	c, err := tiercache.New(tiercache.Options{Namespace: "app"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "flag", true, tiercache.WithTTL(time.Hour), tiercache.WithL1TTL(time.Second)); err != nil {
		panic(err)
	}
	_, res, err := tiercache.FetchResult(ctx, c, "flag", func(context.Context, string) (bool, error) { return false, nil }, tiercache.SkipL1())
	if err != nil {
		panic(err)
	}
	fmt.Println("answered by", res.Source)
	// Output:
	// answered by hit-l2
}

// SkipL2 keeps a value in this instance only: cheap to compute, not worth
// a round trip to Redis, and never seen by other instances.
func ExampleSkipL2() {
	ctx := context.Background()
	c, err := tiercache.New(tiercache.Options{Namespace: "local"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	render := func(ctx context.Context, key string) (string, error) { return "<nav>…</nav>", nil }
	v, res, err := tiercache.FetchResult(ctx, c, "menu:en", render, tiercache.SkipL2(), tiercache.WithTTL(time.Minute))
	if err != nil {
		panic(err)
	}
	fmt.Println(v, res.Source)
	var again string
	r, err := c.Lookup(ctx, "menu:en", &again)
	fmt.Println(again, r.Source, err)
	// Output:
	// <nav>…</nav> loader
	// <nav>…</nav> hit-l1 <nil>
}
