package tiercache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/maypok86/otter/v2"
	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/redistest"
)

const benchKeys = 1 << 12

// zipfKeys returns a repeating zipf-distributed key sequence (s = 1.01), so
// that the benchmark loop does no random-number work of its own.
func zipfKeys() []string {
	r := rand.New(rand.NewPCG(1, 2))
	z := rand.NewZipf(r, 1.01, 1, benchKeys-1)
	out := make([]string, 1<<16)
	for i := range out {
		out[i] = fmt.Sprint("bench:", z.Uint64())
	}
	return out
}

// parallel64 runs fn on 64 goroutines whatever GOMAXPROCS is.
func parallel64(b *testing.B, fn func(pb *testing.PB)) {
	b.SetParallelism((64 + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.RunParallel(fn)
}

// BenchmarkCache_Get compares each read path with its raw baseline in the
// same run: raw otter for L1 hits and raw rueidis GET for L2 hits.
func BenchmarkCache_Get(b *testing.B) {
	ctx := context.Background()
	keys := zipfKeys()
	val := user{ID: 1, Name: "bench", Roles: []string{"a", "b"}}

	// Two baselines: otter configured as the L1 needs it (a byte bound
	// and per-entry expiry on a coarse clock), and otter at its leanest
	// (a size bound only). Both copy the value they find into a local, as
	// Get copies it into dst: a caller of raw otter pays that too when it
	// uses the value.
	clock := otter.NewCoarseClock(time.Millisecond)
	defer clock.Stop()
	rawOtter := map[string]*otter.Options[string, *user]{
		"raw_otter": {
			MaximumWeight:    64 << 20,
			Weigher:          func(k string, _ *user) uint32 { return uint32(len(k) + 200) },
			ExpiryCalculator: otter.ExpiryWriting[string, *user](time.Hour),
			Clock:            clock,
		},
		"raw_otter_lean": {MaximumSize: 1 << 16},
	}
	for _, name := range []string{"raw_otter", "raw_otter_lean"} {
		b.Run(name, func(b *testing.B) {
			o := otter.Must(rawOtter[name])
			defer o.StopAllGoroutines()
			for i := range benchKeys {
				// A value of its own per key, as a cache holds: one
				// shared value would always be in the CPU's cache.
				v := val
				o.Set(fmt.Sprint("bench:", i), &v)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var u user
			for i := range b.N {
				v, ok := o.GetIfPresent(keys[i&(len(keys)-1)])
				if !ok {
					b.Fatal("miss")
				}
				u = *v
			}
			sink = u
		})
	}

	mem := Must(Options{Namespace: "bench"})
	defer mem.Close()
	for i := range benchKeys {
		k := fmt.Sprint("bench:", i)
		if err := mem.Set(ctx, k, val); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("l1_hit", func(b *testing.B) {
		b.ReportAllocs()
		var u user
		for i := range b.N {
			if err := mem.Get(ctx, keys[i&(len(keys)-1)], &u); err != nil {
				b.Fatal(err)
			}
		}
	})
	// l1_hit_metrics is l1_hit with the Prometheus recorder: the ratio of
	// the two is the cost of metrics on the hot path.
	if BenchRecorder == nil {
		b.Fatal("BenchRecorder is not set (bench_prom_test.go sets it)")
	}
	withMetrics := Must(Options{Namespace: "bench", Recorder: BenchRecorder()})
	defer withMetrics.Close()
	for i := range benchKeys {
		if err := withMetrics.Set(ctx, fmt.Sprint("bench:", i), val); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("l1_hit_metrics", func(b *testing.B) {
		b.ReportAllocs()
		var u user
		for i := range b.N {
			if err := withMetrics.Get(ctx, keys[i&(len(keys)-1)], &u); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fetch_hit", func(b *testing.B) {
		load := func(context.Context, string) (user, error) { return val, nil }
		b.ReportAllocs()
		for i := range b.N {
			if _, err := Fetch(ctx, mem, keys[i&(len(keys)-1)], load); err != nil {
				b.Fatal(err)
			}
		}
	})

	srv := redistest.NewStandalone(b)
	raw, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{srv.Addr}, DisableCache: true})
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	l2only := Must(Options{Namespace: "bench", Redis: RedisOptions{Addrs: []string{srv.Addr}}, L1: L1Options{Disabled: true}})
	defer l2only.Close()
	// The raw baseline reads 128 bytes; so does l2_hit, as a []byte value.
	// l2_hit_struct adds decoding a msgpack struct of similar size.
	payload := make([]byte, 128)
	for i := range benchKeys {
		if err := l2only.Set(ctx, fmt.Sprint("bench:", i), payload); err != nil {
			b.Fatal(err)
		}
		if err := l2only.Set(ctx, fmt.Sprint("struct:", i), val); err != nil {
			b.Fatal(err)
		}
		if err := raw.Do(ctx, raw.B().Set().Key(fmt.Sprint("raw:bench:", i)).Value(string(payload)).Build()).Error(); err != nil {
			b.Fatal(err)
		}
	}
	for _, g := range []int{1, 64} {
		b.Run(fmt.Sprintf("raw_rueidis/goroutines=%d", g), func(b *testing.B) {
			b.ReportAllocs()
			run(b, g, func(i int) {
				cmd := raw.B().Get().Key("raw:" + keys[i&(len(keys)-1)]).Build()
				// AsBytes: a caller of raw rueidis takes the value out too.
				if _, err := raw.Do(ctx, cmd).AsBytes(); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(fmt.Sprintf("l2_hit/goroutines=%d", g), func(b *testing.B) {
			b.ReportAllocs()
			run(b, g, func(i int) {
				var v []byte
				if err := l2only.Get(ctx, keys[i&(len(keys)-1)], &v); err != nil {
					b.Fatal(err)
				}
			})
		})
		b.Run(fmt.Sprintf("l2_hit_struct/goroutines=%d", g), func(b *testing.B) {
			b.ReportAllocs()
			run(b, g, func(i int) {
				var u user
				if err := l2only.Get(ctx, "struct:"+keys[i&(len(keys)-1)][len("bench:"):], &u); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}

// run calls fn b.N times, on one goroutine or on 64.
func run(b *testing.B, goroutines int, fn func(i int)) {
	if goroutines == 1 {
		for i := range b.N {
			fn(i)
		}
		return
	}
	parallel64(b, func(pb *testing.PB) {
		i := rand.IntN(1 << 16)
		for pb.Next() {
			fn(i)
			i++
		}
	})
}

// BenchmarkCache_InvalidateTags shows that invalidating a tag costs the
// same whatever the number of entries that carry it: entries=1 is the
// baseline for entries=100000, in the same run.
func BenchmarkCache_InvalidateTags(b *testing.B) {
	ctx := context.Background()
	srv := redistest.NewStandalone(b)
	c := Must(Options{Namespace: "benchtags", Redis: RedisOptions{Addrs: []string{srv.Addr}}})
	defer c.Close()
	for _, n := range []int{1, 100_000} {
		tag := fmt.Sprint("tag", n)
		for start := 0; start < n; start += 1000 {
			batch := map[string]any{}
			for i := start; i < min(n, start+1000); i++ {
				batch[fmt.Sprint(tag, ":", i)] = i
			}
			if err := c.SetMany(ctx, batch, WithTags(tag)); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if err := c.InvalidateTags(ctx, tag); err != nil {
					b.Fatal(err)
				}
			}
		})
		// Every entry is gone after the invalidation.
		var v int
		if err := c.Get(ctx, fmt.Sprint(tag, ":0"), &v); !errors.Is(err, ErrNotFound) {
			b.Fatalf("entry survived: %v", err)
		}
	}
}

// sink keeps benchmark results alive.
var sink any

// BenchRecorder builds the Prometheus recorder of l1_hit_metrics.
// tiercacheprom imports this package, so this package's own test files
// cannot import it: bench_prom_test.go, in package tiercache_test, sets
// this variable.
var BenchRecorder func() Recorder
