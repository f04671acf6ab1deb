package warm

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// redisSetCeiling runs redis-benchmark -t set -P 16 -d 1024 against addr
// and returns its SETs per second: the ceiling warming is compared with.
// It overwrites one key, with no TTL.
func redisSetCeiling(b *testing.B, srv *redistest.Server, n int) float64 {
	return redisBenchmark(b, srv, "-t", "set", "-P", "16", "-d", "1024", "-n", strconv.Itoa(n))
}

// redisSameWork runs redis-benchmark on the work warming does: n distinct
// keys (from a random range of 10^9), values of 1 KiB, and a TTL, still 16
// commands per pipeline on each of its 50 connections. It is the most a
// client can get from this server for that work.
func redisSameWork(b *testing.B, srv *redistest.Server, n int) float64 {
	return redisBenchmark(b, srv, "-P", "16", "-n", strconv.Itoa(n), "-r", "1000000000",
		"set", "bench:same:__rand_int__", strings.Repeat("v", 1024), "px", "7200000")
}

// redisBenchmark runs redis-benchmark with args against srv and returns
// the requests per second of its one test.
func redisBenchmark(b *testing.B, srv *redistest.Server, args ...string) float64 {
	b.Helper()
	args = append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(srv.Port), "-q", "--csv"}, args...)
	out, err := exec.Command("redis-benchmark", args...).CombinedOutput()
	if err != nil {
		b.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	// "test","rps",...  then  "SET","471698.12",...
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimSpace(line), ",")
		if len(f) > 1 && strings.Trim(f[0], `"`) != "test" {
			rps, err := strconv.ParseFloat(strings.Trim(f[1], `"`), 64)
			if err != nil {
				b.Fatalf("redis-benchmark output %q: %v", line, err)
			}
			return rps
		}
	}
	b.Fatalf("no result line in redis-benchmark output:\n%s", out)
	return 0
}

// BenchmarkRunner_Warm warms 100,000 keys of 1 KiB (incompressible) into
// a local redis-server with no delay between batches, and reports keys/s
// and the ratio to the ceiling. Right before every warming run, and out of
// its timing, redis-benchmark measures the ceiling on the same server, and
// the server is emptied: on a shared machine the ceiling moves from one
// second to the next, so each run is compared with its own ceiling and the
// benchmark reports the median ratio.
//
//	go test -run '^$' -bench BenchmarkRunner_Warm -benchtime 5x ./warm/
func BenchmarkRunner_Warm(b *testing.B) {
	const keys = 100_000
	srv := redistest.NewStandalone(b)
	value := make([]byte, 1024)
	_, _ = crand.Read(value)
	gen := func(run int) Generator {
		return func(_ context.Context, yield func(Item) error) error {
			for i := range keys {
				if err := yield(Item{Key: fmt.Sprintf("bench:%d:%d", run, i), Value: value}); err != nil {
					return err
				}
			}
			return nil
		}
	}
	tp := topology{name: "standalone", redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}}}
	for _, batch := range []int{100, 1000} {
		b.Run(fmt.Sprintf("keys=100k,value=1KiB,batch=%d", batch), func(b *testing.B) {
			c := newCache(b, tp, "")
			b.ReportAllocs()
			var total float64
			var ratios, ceilings, sames, sameRatios []float64
			run := 0
			for b.Loop() {
				b.StopTimer()
				if _, err := srv.Do("FLUSHALL"); err != nil {
					b.Fatal(err)
				}
				ceiling := redisSetCeiling(b, srv, keys)
				same := redisSameWork(b, srv, keys)
				if _, err := srv.Do("FLUSHALL"); err != nil {
					b.Fatal(err)
				}
				run++
				r := newRunner(b, Options{Cache: c}, Strategy{Name: "bench", Enabled: true, WarmOnDemand: true,
					BatchSize: batch, DelayBetweenBatches: -1, Generator: gen(run)})
				b.StartTimer()
				res, err := r.Warm(b.Context())
				if err != nil || res[0].Written != keys {
					b.Fatalf("%+v %v", res, err)
				}
				d := res[0].Duration.Seconds()
				total += d
				ceilings = append(ceilings, ceiling)
				ratios = append(ratios, keys/d/ceiling)
				sames = append(sames, same)
				sameRatios = append(sameRatios, keys/d/same)
			}
			b.ReportMetric(float64(keys*run)/total, "keys/s")
			b.ReportMetric(median(ceilings), "ceiling-SET/s")
			b.ReportMetric(median(ratios), "ratio-to-redis-benchmark")
			b.ReportMetric(median(sames), "same-work-SET/s")
			b.ReportMetric(median(sameRatios), "ratio-to-same-work")
			b.Logf("ratios %.3f; to the same work %.3f", ratios, sameRatios)
		})
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// BenchmarkHotKeys_Observe is the cost HotKeys adds to every read when it
// is set as Options.OnAccess, under parallel zipf-distributed keys,
// against an OnAccess that does nothing.
//
//	go test -run '^$' -bench BenchmarkHotKeys_Observe -count 5 ./warm/
func BenchmarkHotKeys_Observe(b *testing.B) {
	keys := make([]string, 100_000)
	for i := range keys {
		keys[i] = "key:" + strconv.Itoa(i)
	}
	run := func(b *testing.B, observe func(string)) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			z := rand.NewZipf(rand.New(rand.NewPCG(rand.Uint64(), 1)), 1.1, 1, uint64(len(keys)-1))
			for pb.Next() {
				observe(keys[z.Uint64()])
			}
		})
	}
	b.Run("baseline_noop", func(b *testing.B) { run(b, func(string) {}) })
	for _, sample := range []int{1, 16} {
		b.Run(fmt.Sprintf("sample=%d", sample), func(b *testing.B) {
			h, err := NewHotKeys(HotKeysOptions{SampleEvery: sample})
			if err != nil {
				b.Fatal(err)
			}
			run(b, h.Observe)
		})
	}
}
