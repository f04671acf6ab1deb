package tiercache_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache"
)

type User struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
}

func ExampleNew() {
	// The zero Options give an in-memory L2 and a 64 MiB L1.
	c, err := tiercache.New(tiercache.Options{Namespace: "app"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Println(c.Namespace())
	// Output: app
}

func ExampleNew_redis() {
	// Standalone Redis from a URL (user, password and DB may be in it).
	c, err := tiercache.New(tiercache.Options{
		Namespace:  "app",
		Redis:      tiercache.RedisOptions{URL: "redis://127.0.0.1:6379/0"},
		L1:         tiercache.L1Options{MaxBytes: 64 << 20, MaxTTL: time.Minute},
		DefaultTTL: time.Hour,
	})
	if err != nil {
		return
	}
	defer c.Close()
}

func ExampleNew_sentinel() {
	c, err := tiercache.New(tiercache.Options{
		Redis: tiercache.RedisOptions{
			SentinelMaster: "mymaster",
			SentinelAddrs:  []string{"10.0.0.1:26379", "10.0.0.2:26379", "10.0.0.3:26379"},
			Password:       "secret",
		},
	})
	if err != nil {
		return
	}
	defer c.Close()
}

func ExampleNew_cluster() {
	c, err := tiercache.New(tiercache.Options{
		Redis: tiercache.RedisOptions{
			Addrs:   []string{"10.0.0.1:7000", "10.0.0.2:7000", "10.0.0.3:7000"},
			Cluster: true,
		},
	})
	if err != nil {
		return
	}
	defer c.Close()
}

func ExampleCache_Get() {
	ctx := context.Background()
	c := tiercache.Must(tiercache.Options{})
	defer c.Close()

	_ = c.Set(ctx, "user:42", User{ID: 42, Name: "Ada"}, tiercache.WithTTL(10*time.Minute))
	var u User
	if err := c.Get(ctx, "user:42", &u); err != nil {
		panic(err)
	}
	fmt.Println(u.Name)

	err := c.Get(ctx, "user:43", &u)
	fmt.Println(errors.Is(err, tiercache.ErrNotFound))
	// Output:
	// Ada
	// true
}

func ExampleFetch() {
	ctx := context.Background()
	c := tiercache.Must(tiercache.Options{})
	defer c.Close()

	loadUser := func(ctx context.Context, key string) (User, error) {
		fmt.Println("loading", key)
		return User{ID: 42, Name: "Ada"}, nil
	}
	for range 3 {
		u, err := tiercache.Fetch(ctx, c, "user:42", loadUser)
		if err != nil {
			panic(err)
		}
		fmt.Println(u.Name)
	}
	// Output:
	// loading user:42
	// Ada
	// Ada
	// Ada
}

func ExampleFetchMany() {
	ctx := context.Background()
	c := tiercache.Must(tiercache.Options{})
	defer c.Close()
	_ = c.Set(ctx, "user:1", User{ID: 1, Name: "cached"})

	users, err := tiercache.FetchMany(ctx, c, []string{"user:1", "user:2"},
		func(ctx context.Context, missing []string) (map[string]User, error) {
			fmt.Println("loading", missing)
			return map[string]User{"user:2": {ID: 2, Name: "loaded"}}, nil
		})
	if err != nil {
		panic(err)
	}
	fmt.Println(users["user:1"].Name, users["user:2"].Name)
	// Output:
	// loading [user:2]
	// cached loaded
}

func ExampleCache_GetMany() {
	ctx := context.Background()
	c := tiercache.Must(tiercache.Options{})
	defer c.Close()
	_ = c.SetMany(ctx, map[string]any{"a": 1, "b": 2})

	got := map[string]int{}
	_ = c.GetMany(ctx, []string{"a", "b", "c"}, got)
	fmt.Println(len(got), got["a"], got["b"])
	// Output: 2 1 2
}

func ExampleOptionsFromEnv() {
	// REDIS_URL, REDIS_PASSWORD, REDIS_CLUSTER_ENABLED, REDIS_SENTINEL_HOSTS,
	// REDIS_SERVICE_NAME, CACHE_NAMESPACE and CACHE_DEFAULT_TTL.
	opts, err := tiercache.OptionsFromEnv()
	if err != nil {
		panic(err)
	}
	c, err := tiercache.New(opts)
	if err != nil {
		return
	}
	defer c.Close()
}
