package warm_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"strconv"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/warm"
)

// quiet keeps the examples' output to what they print.
func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// Two strategies warm an in-memory cache on demand, in priority order.
func ExampleRunner_Warm() {
	c := tiercache.Must(tiercache.Options{Namespace: "example"})
	defer c.Close()

	products := func(ctx context.Context, yield func(warm.Item) error) error {
		for id := range 250 { // a database cursor in real life
			if err := yield(warm.Item{Key: "product:" + strconv.Itoa(id), Value: fmt.Sprintf("product %d", id)}); err != nil {
				return err
			}
		}
		return nil
	}
	r, err := warm.NewRunner(warm.Options{Cache: c, Logger: quiet()},
		warm.Strategy{Name: "products", Priority: 2, Enabled: true, WarmOnDemand: true,
			TTL: 30 * time.Minute, Tags: []string{"catalog"}, Generator: products},
		warm.Strategy{Name: "settings", Priority: 1, Enabled: true, WarmOnDemand: true,
			TTL: 2 * time.Hour, Generator: warm.Items(warm.Item{Key: "config:app", Value: map[string]any{"theme": "dark"}})},
	)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	results, err := r.Warm(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	for _, res := range results {
		fmt.Printf("%s: %d written in %d batches\n", res.Strategy, res.Written, res.Batches)
	}
	var p string
	_ = c.Get(context.Background(), "product:42", &p)
	fmt.Println(p)
	// Output:
	// settings: 1 written in 1 batches
	// products: 250 written in 3 batches
	// product 42
}

// A generator reports an item it could not produce with Item.Err: the
// item counts as failed and the strategy goes on.
func ExampleItem_err() {
	c := tiercache.Must(tiercache.Options{Namespace: "example"})
	defer c.Close()
	r, err := warm.NewRunner(warm.Options{Cache: c, Logger: quiet()}, warm.Strategy{
		Name: "import", Enabled: true, WarmOnDemand: true,
		Generator: warm.Items(
			warm.Item{Key: "a", Value: 1},
			warm.Item{Key: "b", Err: fmt.Errorf("line 2: not JSON")},
			warm.Item{Key: "c", Value: 3},
		),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	res, _ := r.Warm(context.Background())
	fmt.Println(res[0].Written, "written,", res[0].Failed, "failed:", res[0].KeyErr)
	// Output: 2 written, 1 failed: key "b": line 2: not JSON
}

// HotKeys learns the most-read keys from the cache's OnAccess hook.
func ExampleHotKeys() {
	hot, err := warm.NewHotKeys(warm.HotKeysOptions{Size: 100})
	if err != nil {
		log.Fatal(err)
	}
	c := tiercache.Must(tiercache.Options{Namespace: "example", OnAccess: hot.Observe})
	defer c.Close()

	ctx := context.Background()
	for i := range 10 {
		var v string
		_ = c.Get(ctx, "user:1", &v)
		if i%2 == 0 {
			_ = c.Get(ctx, "user:2", &v)
		}
	}
	_ = c.Get(ctx, "user:3", new(string))
	for _, kc := range hot.Top(2) {
		fmt.Println(kc.Key, kc.Count)
	}
	// Output:
	// user:1 10
	// user:2 5
}

// A fleet of service instances shares one Redis: each runs the same
// scheduled strategies, and each scheduled run happens on one instance.
// The hot-key strategy reloads the hottest keys before they expire.
func ExampleNewScheduler() {
	hot, _ := warm.NewHotKeys(warm.HotKeysOptions{})
	c, err := tiercache.New(tiercache.Options{
		Namespace: "app",
		Redis:     tiercache.RedisOptions{URL: "redis://127.0.0.1:6379/0"},
		OnAccess:  hot.Observe,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	refresh, err := hot.Refresher(warm.RefreshOptions{
		Cache:  c,
		Within: 2 * time.Minute,
		Load: func(ctx context.Context, key string) (warm.Item, error) {
			return warm.Item{Value: "loaded " + key}, nil // the database in real life
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	r, err := warm.NewRunner(warm.Options{Cache: c},
		warm.Strategy{Name: "hot-keys", Enabled: true, Schedule: "@every 1m", Generator: refresh},
		warm.Strategy{Name: "nightly-catalog", Enabled: true, Schedule: "0 3 * * *", WarmOnStartup: true,
			TTL: 24 * time.Hour, Generator: warm.Items( /* ... */ )},
	)
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	// CACHE_WARMING_ENABLED=false turns warming off, as in the service.
	if on, err := warm.EnabledFromEnv(); err != nil || !on {
		log.Print("warming off: ", err)
		return
	}
	s, err := warm.NewScheduler(r, warm.SchedulerOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	go r.Startup(context.Background()) // WarmOnStartup strategies, in priority order
	s.Start()
}
