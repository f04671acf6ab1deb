package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache"
)

// A soft invalidation makes a catalogue's prices stale: the next Fetch
// reloads them, but when the source is down the stale price still answers,
// flagged, instead of an error.
func ExampleCache_InvalidateTagsSoft() {
	ctx := context.Background()
	c, err := tiercache.New(tiercache.Options{
		Namespace: "shop",
		FailSafe:  tiercache.FailSafeOptions{MaxDuration: time.Hour},
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "price:42", "12.50 EUR", tiercache.WithTags("catalogue:7")); err != nil {
		panic(err)
	}
	if err := c.InvalidateTagsSoft(ctx, "catalogue:7"); err != nil {
		panic(err)
	}
	var price string
	fmt.Println("get:", c.Get(ctx, "price:42", &price))

	sourceDown := func(ctx context.Context, key string) (string, error) {
		return "", errors.New("price service unreachable")
	}
	price, res, err := tiercache.FetchResult(ctx, c, "price:42", sourceDown)
	fmt.Println("fetch while the source is down:", price, res.Stale, err)

	reload := func(ctx context.Context, key string) (string, error) { return "13.00 EUR", nil }
	if err := c.InvalidateTags(ctx, "catalogue:7"); err != nil { // a hard invalidation wins
		panic(err)
	}
	price, res, err = tiercache.FetchResult(ctx, c, "price:42", reload)
	fmt.Println("fetch after a hard invalidation:", price, res.Stale, err)
	// Output:
	// get: tiercache: get "price:42": not found
	// fetch while the source is down: 12.50 EUR true <nil>
	// fetch after a hard invalidation: 13.00 EUR false <nil>
}
