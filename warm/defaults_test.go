package warm

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
)

// The seed's five default strategies, against a simulated backing store,
// under a skewed workload: docs/warming.md reports the hit ratio this
// test measures.

// category is one kind of data the seed warms: the backing store holds
// size keys "<prefix><rank>", rank 0 the most requested, and the strategy
// warms the warm most popular ones.
type category struct {
	strategy string
	prefix   string
	priority int
	ttl      time.Duration
	schedule string  // re-warm at half the TTL
	size     int     // keys in the backing store
	warm     int     // keys the strategy warms
	share    float64 // share of requests
}

var seedCategories = []category{
	{"critical-app-data", "config:app:", 1, 2 * time.Hour, "@every 1h", 50, 50, 0.10},
	{"detector-models", "model:", 2, time.Hour, "@every 30m", 200, 200, 0.15},
	{"popular-datasets", "dataset:", 3, 30 * time.Minute, "@every 15m", 10_000, 1_000, 0.25},
	{"api-responses", "api:response:", 4, 10 * time.Minute, "@every 5m", 10_000, 1_000, 0.30},
	{"user-sessions", "user:session:", 5, 30 * time.Minute, "@every 15m", 50_000, 2_000, 0.20},
}

// backend is the slow store behind the cache; it counts what it serves.
type backend struct {
	loads     atomic.Int64 // loads on the request path (cache misses)
	warmLoads atomic.Int64 // loads made by warming
}

// value is a key's 512-byte record.
func (b *backend) value(key string) []byte {
	v := make([]byte, 512)
	copy(v, key)
	return v
}

func (b *backend) load(_ context.Context, key string) ([]byte, error) {
	b.loads.Add(1)
	return b.value(key), nil
}

// seedStrategies are the seed's defaults over b: the popular keys of each
// category, by rank, as a store's access statistics would give them.
func seedStrategies(b *backend) []Strategy {
	var out []Strategy
	for _, cat := range seedCategories {
		out = append(out, Strategy{
			Name: cat.strategy, Priority: cat.priority, Enabled: true, Schedule: cat.schedule,
			WarmOnStartup: true, WarmOnDemand: true, TTL: cat.ttl, Tags: []string{cat.strategy},
			DelayBetweenBatches: -1, // nothing else runs yet
			Generator: func(_ context.Context, yield func(Item) error) error {
				for rank := range cat.warm {
					key := cat.prefix + strconv.Itoa(rank)
					b.warmLoads.Add(1)
					if err := yield(Item{Key: key, Value: b.value(key)}); err != nil {
						return err
					}
				}
				return nil
			},
		})
	}
	return out
}

// checkpoints are the read counts at which workload reports the hit
// ratio so far: warming matters most right after start-up.
var checkpoints = []int{1_000, 10_000, 100_000}

// workload issues cache-aside reads: a category by its share, then a rank
// by a zipf distribution (s = 1.1) over the category's keys. It returns the
// hit ratio (reads that did not reach the backing store) over the first
// checkpoints[i] reads.
func workload(t testing.TB, c *tiercache.Cache, b *backend) []float64 {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(42, 7))
	zipfs := make([]*rand.Zipf, len(seedCategories))
	for i, cat := range seedCategories {
		zipfs[i] = rand.NewZipf(rng, 1.1, 1, uint64(cat.size-1))
	}
	before := b.loads.Load()
	var ratios []float64
	for n := 1; n <= checkpoints[len(checkpoints)-1]; n++ {
		i, p := 0, rng.Float64()
		for ; i < len(seedCategories)-1 && p >= seedCategories[i].share; i++ {
			p -= seedCategories[i].share
		}
		cat := seedCategories[i]
		key := cat.prefix + strconv.FormatUint(zipfs[i].Uint64(), 10)
		if _, err := tiercache.Fetch(ctx, c, key, b.load, tiercache.WithTTL(cat.ttl), tiercache.WithTags(cat.strategy)); err != nil {
			t.Fatalf("fetch %s: %v", key, err)
		}
		if n == checkpoints[len(ratios)] {
			ratios = append(ratios, 1-float64(b.loads.Load()-before)/float64(n))
		}
	}
	return ratios
}

// TestDefaultStrategies_HitRatio measures the hit ratio of the first
// 1,000, 10,000 and 100,000 reads after start-up, on a cold cache and on
// one warmed by the seed's five strategies.
//
//	go test -run TestDefaultStrategies_HitRatio -v ./warm/
func TestDefaultStrategies_HitRatio(t *testing.T) {
	eachTopology(t, []string{"memory", "standalone"}, func(t *testing.T, tp topology) {
		cold := workload(t, newCache(t, tp, ""), &backend{})

		var b backend
		c := newCache(t, tp, "")
		r := newRunner(t, Options{Cache: c}, seedStrategies(&b)...)
		results, err := r.Startup(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var written int64
		var took time.Duration
		for _, res := range results {
			written += res.Written
			took += res.Duration
		}
		warmed := workload(t, c, &b)
		t.Logf("%s: %d keys warmed by 5 strategies in %v", tp.name, written, took.Round(time.Millisecond))
		for i, n := range checkpoints {
			t.Logf("%s: first %7d reads: hit ratio cold %.1f%%, warmed %.1f%%", tp.name, n, 100*cold[i], 100*warmed[i])
			if warmed[i] <= cold[i] {
				t.Errorf("warming did not help the first %d reads: %.3f, cold %.3f", n, warmed[i], cold[i])
			}
		}
		if last := warmed[len(warmed)-1]; last <= 0.85 {
			t.Fatalf("warmed hit ratio %.3f, want above 0.85", last)
		}
	})
}

// TestDefaultStrategies_Order: the five strategies run in the seed's
// priority order and warm what they should.
func TestDefaultStrategies_Order(t *testing.T) {
	t.Parallel()
	var b backend
	r := newRunner(t, Options{Cache: newCache(t, topology{name: "memory"}, "")}, seedStrategies(&b)...)
	results, err := r.Startup(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got string
	for _, res := range results {
		got += fmt.Sprintf("%s:%d ", res.Strategy, res.Written)
	}
	want := "critical-app-data:50 detector-models:200 popular-datasets:1000 api-responses:1000 user-sessions:2000 "
	if got != want {
		t.Fatalf("startup ran %q, want %q", got, want)
	}
}
