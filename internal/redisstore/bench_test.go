package redisstore

import (
	"context"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/l2"
	"github.com/tiercache/tiercache/internal/redistest"
)

const (
	benchKeys       = 10_000
	benchValueSize  = 128
	benchGoroutines = 64
)

// benchServer starts a standalone server holding benchKeys values of
// benchValueSize bytes and returns its address and the keys.
func benchServer(b *testing.B) (addr string, keys []string) {
	srv := redistest.NewStandalone(b)
	s, err := New(Options{Addrs: []string{srv.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	keys = make([]string, benchKeys)
	items := make([]l2.Item, benchKeys)
	value := make([]byte, benchValueSize)
	for i := range keys {
		keys[i] = "bench:" + strconv.Itoa(i)
		items[i] = l2.Item{Key: keys[i], Value: value}
	}
	if err := s.MSet(context.Background(), items); err != nil {
		b.Fatal(err)
	}
	return srv.Addr, keys
}

// runGets calls get from about benchGoroutines goroutines, each reading
// zipf-distributed keys.
func runGets(b *testing.B, keys []string, get func(key string) error) {
	b.ReportAllocs()
	b.SetParallelism(max(1, benchGoroutines/runtime.GOMAXPROCS(0)))
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		r := rand.New(rand.NewPCG(seed.Add(1), 42))
		z := rand.NewZipf(r, 1.01, 1, uint64(len(keys)-1))
		for pb.Next() {
			if err := get(keys[z.Uint64()]); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// rawClient returns a rueidis client on addr, closed with the benchmark.
func rawClient(b *testing.B, opt rueidis.ClientOption, addr string) rueidis.Client {
	opt.InitAddress = []string{addr}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	return c
}

// BenchmarkStore_Get compares Store.Get, which opts every read in to
// client tracking, with a plain GET on a rueidis client of default options.
func BenchmarkStore_Get(b *testing.B) {
	addr, keys := benchServer(b)
	ctx := context.Background()
	raw := rawClient(b, rueidis.ClientOption{}, addr)
	var invalidations atomic.Int64
	store, err := New(Options{
		Addrs:          []string{addr},
		OnInvalidation: func(l2.Invalidation) { invalidations.Add(1) },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()

	b.Run("raw_rueidis", func(b *testing.B) {
		runGets(b, keys, func(key string) error {
			return raw.Do(ctx, raw.B().Get().Key(key).Build()).Error()
		})
	})
	b.Run("store", func(b *testing.B) {
		runGets(b, keys, func(key string) error {
			_, err := store.Get(ctx, key)
			return err
		})
	})
}

// BenchmarkTracking_Get measures what each way of asking Redis to track
// reads costs, on rueidis alone with the keep-nothing cache store:
//   - untracked: plain GET, no tracking (the baseline);
//   - optin_static: CLIENT CACHING YES + GET, what Store.Get sends;
//   - optin_wrapped: CLIENT CACHING YES + MULTI + PTTL + GET + EXEC,
//     what DoCache sends without ToStaticTTL;
//   - default_mode: CLIENT TRACKING ON without OPTIN, so that a plain GET
//     is tracked.
func BenchmarkTracking_Get(b *testing.B) {
	addr, keys := benchServer(b)
	ctx := context.Background()
	noop := func([]rueidis.RedisMessage) {}
	untracked := rawClient(b, rueidis.ClientOption{DisableCache: true}, addr)
	optin := rawClient(b, rueidis.ClientOption{OnInvalidations: noop, NewCacheStoreFn: newNoStore}, addr)
	deflt := rawClient(b, rueidis.ClientOption{
		OnInvalidations: noop, NewCacheStoreFn: newNoStore, ClientTrackingOptions: []string{},
	}, addr)

	b.Run("untracked", func(b *testing.B) {
		runGets(b, keys, func(key string) error {
			return untracked.Do(ctx, untracked.B().Get().Key(key).Build()).Error()
		})
	})
	b.Run("optin_static", func(b *testing.B) {
		runGets(b, keys, func(key string) error {
			return optin.DoCache(ctx, optin.B().Get().Key(key).Cache().ToStaticTTL(), trackTTL).Error()
		})
	})
	b.Run("optin_wrapped", func(b *testing.B) {
		runGets(b, keys, func(key string) error {
			return optin.DoCache(ctx, optin.B().Get().Key(key).Cache(), trackTTL).Error()
		})
	})
	b.Run("default_mode", func(b *testing.B) {
		runGets(b, keys, func(key string) error {
			return deflt.Do(ctx, deflt.B().Get().Key(key).Build()).Error()
		})
	})
}

// trackTTL is the client-side TTL the OPTIN comparison passes to DoCache.
const trackTTL = 24 * time.Hour
