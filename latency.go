package tiercache

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// The latency percentiles of Stats come from small lock-free histograms,
// one per tier, that cover the last minute or so: each has two windows of
// latencyWindowSpan, the current one and the previous one, and a window
// is cleared when it comes round again. Recording is one atomic add (and,
// once per window, a compare-and-swap and a clear); concurrent recorders
// at a window's turn may lose a few counts, which a percentile does not
// notice.

// Tiers with a latency histogram.
const (
	tierL1     = iota // reads answered by L1 (sampled)
	tierL2            // L2 operations, each attempt
	tierLoader        // loader calls
	numTiers
)

// latencyWindowSpan is the length of one histogram window.
const latencyWindowSpan = 30 * time.Second

// Buckets are log-linear: four per power of two (a width of at most 25%),
// from 1 ns to 2^38 ns (about 4.5 minutes); longer durations land in the
// last bucket.
const (
	subBits       = 2
	subBuckets    = 1 << subBits
	latencyBucket = 37 * subBuckets
)

type latencyWindow struct {
	w [2]struct {
		index   atomic.Int64 // which window (now / span) the counts belong to
		buckets [latencyBucket]atomic.Uint64
	}
}

// bucketOf maps a duration in nanoseconds to its bucket.
func bucketOf(ns int64) int {
	if ns < subBuckets {
		return int(max(ns, 0))
	}
	e := bits.Len64(uint64(ns)) - 1 // ns in [2^e, 2^(e+1))
	sub := int(ns>>(e-subBits)) & (subBuckets - 1)
	b := (e-subBits+1)*subBuckets + sub
	return min(b, latencyBucket-1)
}

// bucketMid returns a representative duration of bucket b: its middle.
func bucketMid(b int) time.Duration {
	if b < subBuckets {
		return time.Duration(b)
	}
	e := b/subBuckets + subBits - 1
	sub := int64(b % subBuckets)
	lo := int64(1)<<e + sub<<(e-subBits)
	width := int64(1) << (e - subBits)
	return time.Duration(lo + width/2)
}

// observe records d, measured at now (unix nanoseconds).
func (l *latencyWindow) observe(now int64, d time.Duration) {
	idx := now / int64(latencyWindowSpan)
	w := &l.w[idx&1]
	if cur := w.index.Load(); cur != idx {
		if w.index.CompareAndSwap(cur, idx) {
			for i := range w.buckets {
				w.buckets[i].Store(0)
			}
		}
	}
	w.buckets[bucketOf(int64(d))].Add(1)
}

// LatencySummary describes the latency of one tier over the last minute or
// so.
type LatencySummary struct {
	Count uint64        `json:"count"`  // measurements in the window
	P50   time.Duration `json:"p50_ns"` // median; zero without measurements
	P99   time.Duration `json:"p99_ns"`
}

// summary computes the percentiles at now (unix nanoseconds) over the
// current and the previous window.
func (l *latencyWindow) summary(now int64) LatencySummary {
	idx := now / int64(latencyWindowSpan)
	var counts [latencyBucket]uint64
	var total uint64
	for i := range l.w {
		w := &l.w[i]
		if wi := w.index.Load(); wi != idx && wi != idx-1 {
			continue
		}
		for b := range w.buckets {
			n := w.buckets[b].Load()
			counts[b] += n
			total += n
		}
	}
	s := LatencySummary{Count: total}
	if total == 0 {
		return s
	}
	s.P50 = quantile(&counts, total, 0.50)
	s.P99 = quantile(&counts, total, 0.99)
	return s
}

func quantile(counts *[latencyBucket]uint64, total uint64, q float64) time.Duration {
	rank := uint64(q*float64(total-1)) + 1
	var seen uint64
	for b, n := range counts {
		seen += n
		if seen >= rank {
			return bucketMid(b)
		}
	}
	return bucketMid(latencyBucket - 1)
}
