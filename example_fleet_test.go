package tiercache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache"
)

func ExampleCache_Fleet() {
	ctx := context.Background()
	c, err := tiercache.New(tiercache.Options{
		Namespace: "app",
		// Redis: tiercache.RedisOptions{URL: "redis://10.0.0.5:6379/0"},
		Fleet: tiercache.FleetOptions{Enabled: true, InstanceID: "web-1", Version: "v1.2.0", Address: "10.0.0.7:8080"},
		// With Redis, every instance would also time the others' writes:
		// Canary: tiercache.CanaryOptions{Interval: time.Second},
	})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	// The first heartbeat is published in the background, at once.
	var f tiercache.Fleet
	for f.Live == 0 {
		time.Sleep(time.Millisecond)
		if f, err = c.Fleet(ctx); err != nil {
			panic(err)
		}
	}
	for _, m := range f.Members {
		fmt.Println(m.ID, m.Version, m.Address, m.State, m.Health, m.Self)
	}
	// Output: web-1 v1.2.0 10.0.0.7:8080 live healthy true
}
