package tiercache_test

import (
	"context"
	"fmt"

	"github.com/tiercache/tiercache"
)

func ExampleCache_Health() {
	c, err := tiercache.New(tiercache.Options{Namespace: "app"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	h := c.Health(context.Background())
	// A readiness probe passes healthy and degraded.
	fmt.Println(h.Status, h.Checks.Connectivity.Status, h.Checks.CircuitBreaker.State)
	// Output: healthy pass closed
}

func ExampleCache_Stats() {
	ctx := context.Background()
	c, err := tiercache.New(tiercache.Options{Namespace: "app"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	_ = c.Set(ctx, "user:42", "Ada")
	var name string
	for range 3 {
		_ = c.Get(ctx, "user:42", &name)
	}
	_ = c.Get(ctx, "user:43", &name) // a miss

	rep, err := c.Stats(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(rep.Topology, rep.Counters.Requests[tiercache.OpGet][tiercache.ResultHitL1], rep.HitRatio.Overall)
	// Output: memory 3 0.75
}
