package tiercache_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/tiercacheprom"
)

func init() {
	tiercache.BenchRecorder = func() tiercache.Recorder {
		return tiercacheprom.Must(prometheus.NewRegistry(), tiercacheprom.Options{})
	}
}

// overheadValue is the value the metrics-overhead benchmark reads: a small
// struct, as a typical cached record.
type overheadValue struct {
	ID    int
	Name  string
	Roles []string
}

// BenchmarkCache_MetricsOverhead measures what the Prometheus recorder
// costs an L1 hit. Two identical caches are filled with the same keys: one
// without a recorder (metrics off, the default) and one with a
// tiercacheprom.Recorder whose registry is scraped in the background
// throughout (metrics on). Each sub-benchmark reads both in alternating
// blocks of blockOps reads, timing each block, so that the two share the
// machine's state from one millisecond to the next: on a loaded machine,
// separate sub-benchmarks seconds apart differ by more than the cost being
// measured. It reports off-ns/op, on-ns/op and their ratio on/off (the
// target is at most 1.15). docs/benchmarks.md ("Metrics overhead") has the
// command and the figures.
func BenchmarkCache_MetricsOverhead(b *testing.B) {
	const (
		nkeys    = 1 << 12
		blockOps = 256
		// scrapeEvery is a thousand times as often as Prometheus's
		// default 15 s interval.
		scrapeEvery = 15 * time.Millisecond
	)
	ctx := context.Background()
	keys := make([]string, 1<<16)
	z := rand.NewZipf(rand.New(rand.NewPCG(3, 4)), 1.01, 1, nkeys-1)
	for i := range keys {
		keys[i] = fmt.Sprint("bench:", z.Uint64())
	}
	val := overheadValue{ID: 1, Name: "bench", Roles: []string{"a", "b"}}
	load := func(context.Context, string) (overheadValue, error) { return val, nil }

	// build returns an empty cache, with the Prometheus recorder and a
	// background scraper when on.
	build := func(b *testing.B, on bool) *tiercache.Cache {
		opts := tiercache.Options{Namespace: "bench"}
		var reg *prometheus.Registry
		if on {
			reg = prometheus.NewRegistry()
			opts.Recorder = tiercacheprom.Must(reg, tiercacheprom.Options{})
		}
		c := tiercache.Must(opts)
		b.Cleanup(func() { _ = c.Close() })
		if reg != nil {
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				tick := time.NewTicker(scrapeEvery)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := reg.Gather(); err != nil {
						panic(err)
					}
				}
			}()
			b.Cleanup(func() { close(stop); <-done })
		}
		return c
	}

	// read reads key i (modulo) from c into *dst.
	reads := map[string]func(b *testing.B, c *tiercache.Cache, i int, dst *overheadValue){
		"get": func(b *testing.B, c *tiercache.Cache, i int, dst *overheadValue) {
			if err := c.Get(ctx, keys[i&(len(keys)-1)], dst); err != nil {
				b.Fatal(err)
			}
		},
		"fetch": func(b *testing.B, c *tiercache.Cache, i int, dst *overheadValue) {
			v, err := tiercache.Fetch(ctx, c, keys[i&(len(keys)-1)], load)
			if err != nil {
				b.Fatal(err)
			}
			*dst = v
		},
	}
	reads["get_parallel"] = reads["get"]
	for _, name := range []string{"get", "fetch", "get_parallel"} {
		b.Run(name, func(b *testing.B) {
			read := reads[name]
			caches := [2]*tiercache.Cache{build(b, false), build(b, true)} // off, on
			// Filled key by key in turn, so that neither cache's entries
			// sit in older memory than the other's.
			for i := range nkeys {
				for _, c := range caches {
					if err := c.Set(ctx, fmt.Sprint("bench:", i), val); err != nil {
						b.Fatal(err)
					}
				}
			}
			var spent [2]atomic.Int64 // nanoseconds
			// block reads n keys from i on from caches[which], timed.
			block := func(which, i, n int, dst *overheadValue) {
				t0 := time.Now()
				for j := range n {
					read(b, caches[which], i+j, dst)
				}
				spent[which].Add(int64(time.Since(t0)))
			}
			b.ReportAllocs()
			b.ResetTimer()
			if name == "get_parallel" {
				// pb.Next grants one read at a time: each goroutine
				// collects a block's worth, then reads it from both
				// caches.
				b.RunParallel(func(pb *testing.PB) {
					var v overheadValue
					i, first := rand.IntN(len(keys)), rand.IntN(2)
					for {
						n := 0
						for n < blockOps && pb.Next() {
							n++
						}
						if n == 0 {
							return
						}
						block(first, i, n, &v)
						block(1-first, i, n, &v)
						i, first = i+n, 1-first
					}
				})
			} else {
				// b.N reads of each cache, alternating which goes first.
				var v overheadValue
				for i, first := 0, 0; i < b.N; i, first = i+blockOps, 1-first {
					n := min(blockOps, b.N-i)
					block(first, i, n, &v)
					block(1-first, i, n, &v)
				}
			}
			b.StopTimer()
			var hits [2]uint64
			for k, c := range caches {
				st := c.Counters()
				hits[k] = st.Requests.Total(tiercache.ResultHitL1)
			}
			if hits[0] != hits[1] || hits[0] < uint64(b.N) {
				b.Fatalf("L1 hits: off %d, on %d, for %d reads each", hits[0], hits[1], b.N)
			}
			off := float64(spent[0].Load()) / float64(hits[0])
			on := float64(spent[1].Load()) / float64(hits[1])
			b.ReportMetric(off, "off-ns/op")
			b.ReportMetric(on, "on-ns/op")
			b.ReportMetric(on/off, "on/off")
		})
	}
}
