package tiercache

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
)

// BenchmarkQueuedSet measures a Set that goes to the recovery queue (Redis
// unreachable: a closed port, with LazyConnect), with the queue in memory
// only and with the journal, one writer and 64 writers, in one run, so
// that the cost of the fsync is read as a ratio. Writes cycle over 1,000
// keys, so the queue replaces operations and the journal compacts, as in
// a long outage. The journal lives in the test's temporary directory: the
// fsync costs what that file system's costs.
func BenchmarkQueuedSet(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there any more
	keys := make([]string, 1000)
	for i := range keys {
		keys[i] = "queued:" + strconv.Itoa(i)
	}
	for _, mode := range []string{"memory", "journal"} {
		open := func(b *testing.B) *Cache {
			rec := &journalRecorder{}
			o := Options{Namespace: "bench", Redis: RedisOptions{Addrs: []string{addr}, LazyConnect: true},
				Logger: slog.New(slog.DiscardHandler), Retries: -1, Recorder: rec}
			if mode == "journal" {
				o.RecoveryJournalDir = b.TempDir()
			}
			c, err := New(o)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() {
				c.Close()
				if mode == "journal" {
					b.ReportMetric(float64(rec.syncs)/float64(b.N), "fsyncs/op")
				}
			})
			return c
		}
		val := []byte("a value of some forty bytes, more or less")
		b.Run(mode+"/1_writer", func(b *testing.B) {
			c := open(b)
			ctx := context.Background()
			i := 0
			for b.Loop() {
				if err := c.Set(ctx, keys[i%len(keys)], val); !errors.Is(err, ErrQueued) {
					b.Fatal(err)
				}
				i++
			}
		})
		b.Run(mode+"/64_writers", func(b *testing.B) {
			c := open(b)
			ctx := context.Background()
			var n atomic.Uint64
			parallel64(b, func(pb *testing.PB) {
				for pb.Next() {
					k := keys[n.Add(1)%uint64(len(keys))]
					if err := c.Set(ctx, k, val); !errors.Is(err, ErrQueued) {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
