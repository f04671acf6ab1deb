package tiercache

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// BenchmarkFetch_FleetHerd: 4 instances (Lock.Enabled) × 250 goroutines
// Fetch one cold key whose loader takes 50 ms. The figure is the herd's
// wall time as a ratio to the loader's 50 ms (1.0 would be no cost beyond
// the one load), for waiters woken by the key's invalidation ("woken")
// and, in the same run, for waiters that only poll ("polling", wake-ups
// off), with the loader calls per herd.
func BenchmarkFetch_FleetHerd(b *testing.B) {
	redistest.Require(b)
	srv := redistest.NewStandalone(b)
	const instances, goroutines, loadTime = 4, 250, 50 * time.Millisecond
	for _, mode := range []string{"woken", "polling"} {
		b.Run(mode, func(b *testing.B) {
			ns := testNamespace(b)
			cs := make([]*Cache, instances)
			for i := range cs {
				c, err := New(Options{Namespace: ns, Redis: RedisOptions{Addrs: []string{srv.Addr}},
					Lock: LockOptions{Enabled: true}, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				c.noWake = mode == "polling"
				b.Cleanup(func() { _ = c.Close() })
				cs[i] = c
			}
			var calls atomic.Int64
			load := func(context.Context, string) (int, error) {
				calls.Add(1)
				time.Sleep(loadTime) // the loader's work
				return 1, nil
			}
			var total time.Duration
			b.ResetTimer()
			for i := range b.N {
				key := fmt.Sprint("herd-", i)
				start := time.Now()
				var wg sync.WaitGroup
				for _, c := range cs {
					for range goroutines {
						wg.Go(func() {
							if _, err := Fetch(context.Background(), c, key, load); err != nil {
								b.Error(err)
							}
						})
					}
				}
				wg.Wait()
				total += time.Since(start)
			}
			b.ReportMetric(float64(total)/float64(b.N)/float64(time.Millisecond), "ms/herd")
			b.ReportMetric(float64(total)/float64(b.N)/float64(loadTime), "herd/loader")
			b.ReportMetric(float64(calls.Load())/float64(b.N), "loads/herd")
		})
	}
}
