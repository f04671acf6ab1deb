package redisstore

import (
	"context"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/l2"
	"github.com/tiercache/tiercache/internal/redistest"
)

const (
	benchKeys       = 10_000
	benchValueSize  = 128
	benchGoroutines = 64
)

// BenchmarkStore_Get compares Store.Get, which reads with client tracking
// through DoCache, with a plain rueidis GET on a client of default options,
// both at about 64 goroutines over zipf-distributed keys on one standalone
// server.
func BenchmarkStore_Get(b *testing.B) {
	srv := redistest.NewStandalone(b)
	ctx := context.Background()

	var invalidated atomic.Int64
	store, err := New(Options{
		Addrs:          []string{srv.Addr},
		OnInvalidation: func(l2.Invalidation) { invalidated.Add(1) },
	})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	raw, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr}})
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()

	keys := make([]string, benchKeys)
	items := make([]l2.Item, benchKeys)
	value := make([]byte, benchValueSize)
	for i := range keys {
		keys[i] = "bench:" + strconv.Itoa(i)
		items[i] = l2.Item{Key: keys[i], Value: value}
	}
	if err := store.MSet(ctx, items); err != nil {
		b.Fatal(err)
	}

	run := func(b *testing.B, get func(key string) error) {
		b.ReportAllocs()
		b.SetParallelism(max(1, benchGoroutines/runtime.GOMAXPROCS(0)))
		var seed atomic.Uint64
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			r := rand.New(rand.NewPCG(seed.Add(1), 42))
			z := rand.NewZipf(r, 1.01, 1, benchKeys-1)
			for pb.Next() {
				if err := get(keys[z.Uint64()]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}

	b.Run("raw_rueidis", func(b *testing.B) {
		run(b, func(key string) error {
			_, err := raw.Do(ctx, raw.B().Get().Key(key).Build()).AsBytes()
			return err
		})
	})
	b.Run("store", func(b *testing.B) {
		run(b, func(key string) error {
			_, err := store.Get(ctx, key)
			return err
		})
	})
}
