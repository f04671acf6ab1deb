// Command warming runs the seed's five default warming strategies against a
// simulated slow backing store, then a skewed read workload, and reports
// the hit ratio the warmed cache reaches (the seed's target is above 85%).
//
//	go run ./examples/warming                       # in-memory L2
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/warming
//	go run ./examples/warming -compare              # and the same reads on a cold cache
//
// The backing store holds five kinds of data. Each strategy warms the most
// popular keys of one kind, as a store's access statistics would list them,
// with the seed's priority and TTL:
//
//	priority  strategy           TTL     keys in the store  keys warmed  share of reads
//	1         critical-app-data  2h      50                 50           10%
//	2         detector-models    1h      200                200          15%
//	3         popular-datasets   30min   10,000             1,000        25%
//	4         api-responses      10min   10,000             1,000        30%
//	5         user-sessions      30min   50,000             2,000        20%
//
// deploy/tiercache.yaml configures the same five strategies for tiercache
// serve, with JSON Lines sources (TestDeploySample_SeedStrategies).
//
// The workload reads through tiercache.Fetch (cache-aside): a kind by its
// share, then a key by a zipf distribution (s = 1.1) over that kind's keys.
// A read that reaches the backing store is a miss.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/warm"
)

// kind is one kind of data in the backing store: keys "<prefix><rank>",
// rank 0 the most requested.
type kind struct {
	strategy string
	prefix   string
	priority int
	ttl      time.Duration
	schedule string  // re-warm at half the TTL
	size     int     // keys in the store
	warm     int     // keys the strategy warms: the most popular ones
	share    float64 // share of reads
}

// seedKinds are the seed's five default strategies, in its order.
var seedKinds = []kind{
	{"critical-app-data", "config:app:", 1, 2 * time.Hour, "@every 1h", 50, 50, 0.10},
	{"detector-models", "model:", 2, time.Hour, "@every 30m", 200, 200, 0.15},
	{"popular-datasets", "dataset:", 3, 30 * time.Minute, "@every 15m", 10_000, 1_000, 0.25},
	{"api-responses", "api:response:", 4, 10 * time.Minute, "@every 5m", 10_000, 1_000, 0.30},
	{"user-sessions", "user:session:", 5, 30 * time.Minute, "@every 15m", 50_000, 2_000, 0.20},
}

// Store is the simulated backing store: every call costs Latency, and the
// store counts what it serves.
type Store struct {
	Latency time.Duration

	loads   atomic.Int64 // single-key loads: cache misses
	queries atomic.Int64 // bulk queries made by warming
}

// value is a key's 512-byte record.
func (s *Store) value(key string) []byte {
	v := make([]byte, 512)
	copy(v, key)
	return v
}

// Load reads one key, as the application does on a cache miss.
func (s *Store) Load(ctx context.Context, key string) ([]byte, error) {
	s.loads.Add(1)
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.value(key), nil
}

// Popular streams the n most requested keys of k with their values, one
// query per page of 500, as warming reads them.
func (s *Store) Popular(ctx context.Context, k kind, n int, yield func(warm.Item) error) error {
	const page = 500
	for rank := range n {
		if rank%page == 0 {
			s.queries.Add(1)
			if err := s.wait(ctx); err != nil {
				return err
			}
		}
		key := k.prefix + strconv.Itoa(rank)
		if err := yield(warm.Item{Key: key, Value: s.value(key)}); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) wait(ctx context.Context) error {
	if s.Latency <= 0 {
		return nil
	}
	t := time.NewTimer(s.Latency)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Strategies are the seed's five default strategies over s.
func Strategies(s *Store) []warm.Strategy {
	out := make([]warm.Strategy, 0, len(seedKinds))
	for _, k := range seedKinds {
		out = append(out, warm.Strategy{
			Name: k.strategy, Priority: k.priority, Enabled: true, Schedule: k.schedule,
			WarmOnStartup: true, WarmOnDemand: true, TTL: k.ttl, Tags: []string{k.strategy},
			BatchSize: 500,
			// Nothing else runs yet at start-up; a service warming under
			// live traffic keeps the default 100 ms.
			DelayBetweenBatches: -1,
			Generator: func(ctx context.Context, yield func(warm.Item) error) error {
				return s.Popular(ctx, k, k.warm, yield)
			},
		})
	}
	return out
}

// Config is one run of the example.
type Config struct {
	Cache   tiercache.Options // the namespace is required
	Reads   int               // reads in the workload
	Workers int               // goroutines issuing them
	Latency time.Duration     // the backing store's latency per call
	Warm    bool              // warm the cache before the workload
	Seed    uint64            // the workload's random seed
}

// Report is what a run measured.
type Report struct {
	Warmed    []warm.Result
	Reads     int
	Loads     int64 // reads that reached the backing store
	Queries   int64 // bulk queries made by warming
	HitRatio  float64
	WarmTime  time.Duration
	ReadsTime time.Duration
}

// Run warms a cache (when cfg.Warm) with the seed's strategies, then
// issues the workload, and reports the hit ratio.
func Run(ctx context.Context, cfg Config) (Report, error) {
	var rep Report
	c, err := tiercache.New(cfg.Cache)
	if err != nil {
		return rep, err
	}
	defer c.Close()
	store := &Store{Latency: cfg.Latency}
	if cfg.Warm {
		r, err := warm.NewRunner(warm.Options{Cache: c, Logger: cfg.Cache.Logger}, Strategies(store)...)
		if err != nil {
			return rep, err
		}
		defer r.Close()
		start := time.Now()
		rep.Warmed, err = r.Startup(ctx)
		rep.WarmTime = time.Since(start)
		if err != nil {
			return rep, fmt.Errorf("warming: %w", err)
		}
	}
	start := time.Now()
	if err := workload(ctx, c, store, cfg); err != nil {
		return rep, err
	}
	rep.ReadsTime = time.Since(start)
	rep.Reads = cfg.Reads
	rep.Loads = store.loads.Load()
	rep.Queries = store.queries.Load()
	rep.HitRatio = 1 - float64(rep.Loads)/float64(rep.Reads)
	return rep, nil
}

// workload issues cfg.Reads cache-aside reads over cfg.Workers goroutines,
// each with its own random sequence.
func workload(ctx context.Context, c *tiercache.Cache, store *Store, cfg Config) error {
	workers := max(cfg.Workers, 1)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for w := range workers {
		n := cfg.Reads / workers
		if w < cfg.Reads%workers {
			n++
		}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
			zipfs := make([]*rand.Zipf, len(seedKinds))
			for i, k := range seedKinds {
				zipfs[i] = rand.NewZipf(rng, 1.1, 1, uint64(k.size-1))
			}
			for range n {
				i, p := 0, rng.Float64()
				for ; i < len(seedKinds)-1 && p >= seedKinds[i].share; i++ {
					p -= seedKinds[i].share
				}
				k := seedKinds[i]
				key := k.prefix + strconv.FormatUint(zipfs[i].Uint64(), 10)
				_, err := tiercache.Fetch(ctx, c, key, store.Load, tiercache.WithTTL(k.ttl), tiercache.WithTags(k.strategy))
				if err != nil {
					once.Do(func() { first = fmt.Errorf("read %s: %w", key, err) })
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

func main() {
	reads := flag.Int("reads", 100_000, "reads in the workload")
	workers := flag.Int("workers", 8, "goroutines issuing the reads")
	latency := flag.Duration("latency", time.Millisecond, "the backing store's latency per call")
	compare := flag.Bool("compare", false, "also run the workload on a cold cache")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *reads, *workers, *latency, *compare); err != nil {
		fmt.Fprintln(os.Stderr, "warming:", err)
		os.Exit(1)
	}
}

// run configures the cache from the environment (REDIS_URL and friends;
// without them, the in-memory L2) and prints the report.
func run(ctx context.Context, out io.Writer, reads, workers int, latency time.Duration, compare bool) error {
	opts, err := tiercache.OptionsFromEnv()
	if err != nil {
		return err
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	base := "warming-example:" + strconv.FormatInt(time.Now().UnixNano(), 36)
	cfg := Config{Cache: opts, Reads: reads, Workers: workers, Latency: latency, Seed: 42}
	if compare {
		cfg.Cache.Namespace = base + ":cold"
		cold, err := Run(ctx, cfg)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "cold cache: hit ratio %.1f%% (%d of %d reads reached the backing store) in %v\n\n",
			100*cold.HitRatio, cold.Loads, cold.Reads, cold.ReadsTime.Round(time.Millisecond))
	}
	cfg.Cache.Namespace = base + ":warm"
	cfg.Warm = true
	rep, err := Run(ctx, cfg)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "priority\tstrategy\tTTL\tkeys\tduration\t")
	var written int64
	for i, res := range rep.Warmed {
		k := seedKinds[i]
		written += res.Written
		fmt.Fprintf(tw, "%d\t%s\t%v\t%d\t%v\t\n", k.priority, res.Strategy, k.ttl, res.Written, res.Duration.Round(time.Microsecond))
	}
	_ = tw.Flush()
	fmt.Fprintf(out, "warmed %d keys with %d bulk queries in %v\n", written, rep.Queries, rep.WarmTime.Round(time.Millisecond))
	fmt.Fprintf(out, "workload: %d reads by %d goroutines (zipf s=1.1 within each kind) in %v\n",
		rep.Reads, workers, rep.ReadsTime.Round(time.Millisecond))
	verdict := "above"
	if rep.HitRatio <= 0.85 {
		verdict = "BELOW"
	}
	fmt.Fprintf(out, "hit ratio %.1f%%, %s the 85%% target: %d of %d reads reached the backing store\n",
		100*rep.HitRatio, verdict, rep.Loads, rep.Reads)
	return nil
}
