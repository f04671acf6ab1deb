package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache"
)

func ExampleCache_LookupMany() {
	ctx := context.Background()
	c, err := tiercache.New(tiercache.Options{Namespace: "app"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	err = c.SetItems(ctx, []tiercache.Item{
		{Key: "user:1", Value: []byte("Ada"), TTL: time.Hour},
		{Key: "user:2", Value: []byte("Alan"), TTL: time.Minute, Tags: []string{"org:7"}},
	})
	if err != nil {
		panic(err)
	}
	// One KeyResult per distinct key, in order; a Raw receives the
	// stored bytes as they are.
	values := map[string]tiercache.Raw{}
	results, err := c.LookupMany(ctx, []string{"user:1", "user:2", "user:3"}, values)
	if err != nil {
		panic(err) // an invalid key or destination, or a closed cache
	}
	for _, r := range results {
		switch {
		case errors.Is(r.Err, tiercache.ErrNotFound):
			fmt.Printf("%s: miss\n", r.Key)
		case r.Err != nil:
			fmt.Printf("%s: %v\n", r.Key, r.Err) // L2 failing, no stale copy
		default:
			ttl := r.Result.ExpiresAt.Sub(r.Result.CreatedAt)
			fmt.Printf("%s: %s from %s, stale %v, ttl %v\n", r.Key, values[r.Key].Data, r.Result.Source, r.Result.Stale, ttl)
		}
	}
	// Output:
	// user:1: Ada from hit-l1, stale false, ttl 1h0m0s
	// user:2: Alan from hit-l1, stale false, ttl 1m0s
	// user:3: miss
}

// FetchManyResult tells, key by key, where each value came from.
func ExampleFetchManyResult() {
	ctx := context.Background()
	c, err := tiercache.New(tiercache.Options{Namespace: "many-result"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	if err := c.Set(ctx, "user:1", "ann"); err != nil {
		panic(err)
	}
	load := func(ctx context.Context, keys []string) (map[string]string, error) {
		return map[string]string{"user:2": "bob"}, nil
	}
	vals, res, err := tiercache.FetchManyResult(ctx, c, []string{"user:1", "user:2"}, load)
	if err != nil {
		panic(err)
	}
	for _, k := range []string{"user:1", "user:2"} {
		fmt.Println(k, vals[k], res[k].Source, res[k].Stale)
	}
	// Output:
	// user:1 ann hit-l1 false
	// user:2 bob loader false
}
