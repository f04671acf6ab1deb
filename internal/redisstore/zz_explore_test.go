package redisstore

import (
	"context"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/rueidis"
	"github.com/tiercache/tiercache/internal/redistest"
)

func BenchmarkExplore(b *testing.B) {
	srv := startExploreServer(b)
	ctx := context.Background()
	mk := func(o rueidis.ClientOption) rueidis.Client {
		o.InitAddress = []string{srv}
		c, err := rueidis.NewClient(o)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		return c
	}
	noop := func([]rueidis.RedisMessage) {}
	raw := mk(rueidis.ClientOption{})
	optin := mk(rueidis.ClientOption{OnInvalidations: noop, NewCacheStoreFn: newNoStore})
	optin1 := mk(rueidis.ClientOption{OnInvalidations: noop, NewCacheStoreFn: newNoStore, PipelineMultiplex: -1})
	raw1 := mk(rueidis.ClientOption{PipelineMultiplex: -1})
	deflt := mk(rueidis.ClientOption{OnInvalidations: noop, NewCacheStoreFn: newNoStore, ClientTrackingOptions: []string{}})
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = "bench:" + strconv.Itoa(i)
		raw.Do(ctx, raw.B().Set().Key(keys[i]).Value(string(make([]byte, 128))).Build())
	}
	run := func(b *testing.B, get func(key string) error) {
		b.ReportAllocs()
		b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
		var seed atomic.Uint64
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(seed.Add(1), 42))
			z := rand.NewZipf(r, 1.01, 1, 9999)
			for pb.Next() {
				if err := get(keys[z.Uint64()]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	for i := 0; i < 8; i++ {
		b.Run("raw", func(b *testing.B) {
			run(b, func(k string) error { return raw.Do(ctx, raw.B().Get().Key(k).Build()).Error() })
		})
		b.Run("optin_static", func(b *testing.B) {
			run(b, func(k string) error {
				return optin.DoCache(ctx, optin.B().Get().Key(k).Cache().ToStaticTTL(), trackTTL).Error()
			})
		})
		b.Run("optin_multi", func(b *testing.B) {
			run(b, func(k string) error { return optin.DoCache(ctx, optin.B().Get().Key(k).Cache(), trackTTL).Error() })
		})
		b.Run("optin1", func(b *testing.B) {
			run(b, func(k string) error {
				return optin1.DoCache(ctx, optin1.B().Get().Key(k).Cache().ToStaticTTL(), trackTTL).Error()
			})
		})
		b.Run("raw1", func(b *testing.B) {
			run(b, func(k string) error { return raw1.Do(ctx, raw1.B().Get().Key(k).Build()).Error() })
		})
		b.Run("default_do", func(b *testing.B) {
			run(b, func(k string) error { return deflt.Do(ctx, deflt.B().Get().Key(k).Build()).Error() })
		})
	}
}

func startExploreServer(b *testing.B) string {
	return redistest.NewStandalone(b).Addr
}
