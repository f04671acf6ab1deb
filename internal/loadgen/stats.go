package loadgen

import (
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to maxLatency, with
// three significant digits (an error of at most 0.1%).
const (
	maxLatency = int64(100 * time.Second / time.Microsecond)
	sigDigits  = 3
	// maxShards bounds the histograms kept: workers share them, each
	// shard behind its own lock.
	maxShards = 16
)

// tiers are the answers of a read, in the order reports list them.
var tiers = [...]string{"hit-l1", "hit-l2", "loader", "stale", "miss"}

func tierIndex(t string) int {
	for i, name := range tiers {
		if name == t {
			return i
		}
	}
	return -1
}

// stats collects a run's measurements in shards, so that workers seldom
// share a lock.
type stats struct {
	shards []*shard
	ops    atomic.Int64
}

type shard struct {
	mu       sync.Mutex
	all      *hdrhistogram.Histogram
	window   *hdrhistogram.Histogram // since the last progress call
	ops      [3]int64                // by Op
	tiers    [len(tiers)]int64
	other    int64 // reads answered with a tier not in tiers
	errors   map[string]int64
	queued   int64
	parent   *stats
	failures int64
}

func newStats(workers int) *stats {
	n := min(workers, maxShards)
	s := &stats{shards: make([]*shard, n)}
	for i := range s.shards {
		s.shards[i] = &shard{
			all:    hdrhistogram.New(1, maxLatency, sigDigits),
			window: hdrhistogram.New(1, maxLatency, sigDigits),
			errors: map[string]int64{},
			parent: s,
		}
	}
	return s
}

func (s *stats) shard(worker int) *shard { return s.shards[worker%len(s.shards)] }

func (s *stats) totalOps() int64 { return s.ops.Load() }

// record counts one finished operation.
func (sh *shard) record(op Op, out Outcome, d time.Duration) {
	us := min(max(int64(d/time.Microsecond), 1), maxLatency)
	sh.mu.Lock()
	sh.ops[op]++
	switch {
	case out.Err != "":
		sh.errors[out.Err]++
		sh.failures++
	case op == OpGet:
		if i := tierIndex(out.Tier); i >= 0 {
			sh.tiers[i]++
		} else {
			sh.other++
		}
	case out.Queued:
		sh.queued++
	}
	_ = sh.all.RecordValue(us)
	_ = sh.window.RecordValue(us)
	sh.mu.Unlock()
	sh.parent.ops.Add(1)
}

// interval returns the operations, the failures so far and the p99 since
// the last call, and starts a new interval.
func (s *stats) interval() (ops, errs int64, p99 time.Duration) {
	merged := hdrhistogram.New(1, maxLatency, sigDigits)
	for _, sh := range s.shards {
		sh.mu.Lock()
		merged.Merge(sh.window)
		sh.window.Reset()
		errs += sh.failures
		sh.mu.Unlock()
	}
	return merged.TotalCount(), errs, time.Duration(merged.ValueAtQuantile(99)) * time.Microsecond
}

// merge sums the shards into a Report's counts.
func (s *stats) merge(rep *Report) *hdrhistogram.Histogram {
	h := hdrhistogram.New(1, maxLatency, sigDigits)
	for _, sh := range s.shards {
		sh.mu.Lock()
		h.Merge(sh.all)
		for op, n := range sh.ops {
			if n > 0 {
				rep.Ops[Op(op).String()] += n
			}
		}
		for i, n := range sh.tiers {
			if n > 0 {
				rep.Reads[tiers[i]] += n
			}
		}
		if sh.other > 0 {
			rep.Reads["other"] += sh.other
		}
		for k, n := range sh.errors {
			rep.Errors[k] += n
			rep.ErrorsTotal += n
		}
		rep.Queued += sh.queued
		sh.mu.Unlock()
	}
	return h
}
