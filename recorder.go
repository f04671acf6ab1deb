package tiercache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/internal/l2"
)

// Recorder receives the cache's measurements, for export to a metrics
// system. Set it with Options.Recorder; tiercacheprom implements it for
// Prometheus. Embed NopRecorder to implement only some methods and to keep
// compiling when methods are added.
//
// Measurements come two ways. Events that carry a duration or a label the
// cache does not count itself are reported as they happen, through the
// Record methods; they all happen off the L1-hit path. Everything the cache
// counts anyway (requests by operation and result, invalidations received,
// corrupt values, the breaker state, the recovery queue, the L1 size) is
// read from the cache when the recorder is collected: New hands the cache to
// Attach, and the recorder calls Cache.Counters (cheap, no I/O) or Cache.Stats
// (which asks Redis) then. So an L1 hit never calls the recorder.
//
// Labels passed to the methods come from small fixed sets, documented on
// each method, except warming strategy names, which come from
// configuration. Keys are never passed.
//
// Every method must be safe for concurrent use and return quickly: they run
// on the goroutine of the operation they describe.
type Recorder interface {
	// Attach is called once by New, before New returns, with the cache the
	// recorder serves. One recorder serves one cache.
	Attach(c *Cache)

	// RecordL2 reports one attempt of an L2 operation. op is one of get,
	// mget, set, mset, del, incr, setnx, lock, unlock and cas (a
	// conditional write or delete). result is "ok"
	// (a miss included), "error" (Redis answered with an error),
	// "unavailable" (no answer in time, or no connection), "canceled" (the
	// caller's context ended) or "rejected" (the circuit breaker refused
	// it; d is then zero: L2 was not asked).
	RecordL2(op, result string, d time.Duration)

	// RecordLoad reports one loader call: one key for Fetch, one batch for
	// FetchMany. result is "ok", "not_found" (the loader returned
	// ErrNotFound) or "error" (a panic included).
	RecordLoad(result string, d time.Duration)

	// RecordInvalidations reports n invalidations this cache applied in
	// L2, for every instance: kind "tag" (InvalidateTags, one per tag),
	// "clear" (Clear), "delete" (Delete, one per key), or their soft
	// forms "tag_soft", "clear_soft" and "delete_soft", including those
	// applied later from the recovery queue.
	RecordInvalidations(kind string, n int)

	// RecordBreaker reports that the circuit breaker around L2 changed
	// state.
	RecordBreaker(to BreakerState)

	// RecordWarm reports one warming run of a strategy: keys written,
	// keys that failed, its wall time, and why it ended early (nil when it
	// ran to the end). Cache.RecordWarm forwards to it.
	RecordWarm(strategy string, keys, failed int, d time.Duration, err error)

	// RecordJournalSync reports one fsync of the recovery journal (see
	// Options.RecoveryJournalDir): an append of queued operations, or a
	// compaction (rewrite, fsync, rename, directory fsync).
	RecordJournalSync(d time.Duration)

	// RecordJournalQuarantine reports a recovery journal that New moved
	// aside: reason "corrupt", "truncated" or "namespace" (another
	// namespace's journal).
	RecordJournalQuarantine(reason string)

	// RecordJournalRestored reports n operations New read back from the
	// recovery journal and queued again.
	RecordJournalRestored(n int)

	// RecordCoherenceLag reports the lag of one coherence canary marker
	// (Options.Canary): how long another instance's write took to
	// invalidate this instance's copy, on Redis's clock.
	RecordCoherenceLag(d time.Duration)
}

// NopRecorder is a Recorder that does nothing: the default when
// Options.Recorder is nil.
type NopRecorder struct{}

// Attach does nothing.
func (NopRecorder) Attach(*Cache) {}

// RecordL2 does nothing.
func (NopRecorder) RecordL2(string, string, time.Duration) {}

// RecordLoad does nothing.
func (NopRecorder) RecordLoad(string, time.Duration) {}

// RecordInvalidations does nothing.
func (NopRecorder) RecordInvalidations(string, int) {}

// RecordBreaker does nothing.
func (NopRecorder) RecordBreaker(BreakerState) {}

// RecordWarm does nothing.
func (NopRecorder) RecordWarm(string, int, int, time.Duration, error) {}

// RecordJournalSync does nothing.
func (NopRecorder) RecordJournalSync(time.Duration) {}

// RecordJournalQuarantine does nothing.
func (NopRecorder) RecordJournalQuarantine(string) {}

// RecordJournalRestored does nothing.
func (NopRecorder) RecordJournalRestored(int) {}

// RecordCoherenceLag does nothing.
func (NopRecorder) RecordCoherenceLag(time.Duration) {}

var _ Recorder = NopRecorder{}

// RecordWarm reports one warming run to Options.Recorder and keeps it for
// Stats (the last few runs). The warm package calls it after every run;
// err is why the run ended early, nil when it ran to the end.
func (c *Cache) RecordWarm(strategy string, keys, failed int, d time.Duration, err error) {
	c.obs.rec.RecordWarm(strategy, keys, failed, d, err)
	run := WarmRun{Strategy: strategy, Finished: c.opts.Now(), Duration: d, Keys: keys, Failed: failed}
	if err != nil {
		run.Err = redactErr(err, c.opts.Redis)
	}
	c.obs.warmMu.Lock()
	defer c.obs.warmMu.Unlock()
	if len(c.obs.warm) == maxWarmRuns {
		copy(c.obs.warm, c.obs.warm[1:])
		c.obs.warm = c.obs.warm[:maxWarmRuns-1]
	}
	c.obs.warm = append(c.obs.warm, run)
}

// maxWarmRuns is how many warming runs Stats keeps.
const maxWarmRuns = 20

// WarmRun is one warming run reported through Cache.RecordWarm.
type WarmRun struct {
	Strategy string        `json:"strategy"`
	Finished time.Time     `json:"finished"`
	Duration time.Duration `json:"duration_ns"`
	Keys     int           `json:"keys"`
	Failed   int           `json:"failed"`
	Err      string        `json:"error,omitempty"`
}

// Op is a read operation, for Counters.Requests.
type Op uint8

// Read operations. GetMany and FetchMany count one request per distinct
// key.
const (
	OpGet       Op = iota // Get and Lookup
	OpGetMany             // GetMany
	OpFetch               // Fetch and FetchResult
	OpFetchMany           // FetchMany
	NumOps                // the number of operations
)

// String returns get, get_many, fetch or fetch_many.
func (o Op) String() string {
	switch o {
	case OpGet:
		return "get"
	case OpGetMany:
		return "get_many"
	case OpFetch:
		return "fetch"
	case OpFetchMany:
		return "fetch_many"
	}
	return "unknown"
}

// RequestResult is how a read ended, for Counters.Requests.
type RequestResult uint8

// Results of a read. A cached "not found" (negative caching) counts as a
// hit of the tier that held it, except that a Fetch answered by one from
// L2 counts as a miss.
const (
	ResultHitL1 RequestResult = iota // answered by L1
	ResultHitL2                      // answered by L2
	ResultMiss                       // nothing cached; for Fetch, the loader answered
	ResultStale                      // a fail-safe stale value answered
	ResultError                      // the read failed
	NumResults                       // the number of results
)

// String returns hit_l1, hit_l2, miss, stale or error.
func (r RequestResult) String() string {
	switch r {
	case ResultHitL1:
		return "hit_l1"
	case ResultHitL2:
		return "hit_l2"
	case ResultMiss:
		return "miss"
	case ResultStale:
		return "stale"
	case ResultError:
		return "error"
	}
	return "unknown"
}

// Requests counts reads by operation and result:
// Requests[OpGet][ResultHitL1] is the number of Gets answered by L1.
type Requests [NumOps][NumResults]uint64

// Total returns the number of reads with result r, over every operation.
func (q *Requests) Total(r RequestResult) uint64 {
	var n uint64
	for op := range q {
		n += q[op][r]
	}
	return n
}

// All returns the number of reads.
func (q *Requests) All() uint64 {
	var n uint64
	for r := range NumResults {
		n += q.Total(r)
	}
	return n
}

// counterStripes is the number of cells of a stripedCounter.
const (
	stripeBits     = 4
	counterStripes = 1 << stripeBits
)

// stripedCounter is a counter for the hot path: each goroutine adds to
// one of several cache lines, so goroutines on different cores rarely
// contend. Its methods mirror atomic.Uint64's.
type stripedCounter struct {
	cells [counterStripes]struct {
		n atomic.Uint64
		_ [56]byte // one cell per cache line
	}
}

// Add adds n and returns the new value of the caller's cell (not the
// total).
func (s *stripedCounter) Add(n uint64) uint64 { return s.cells[stripe()].n.Add(n) }

// stripe picks the calling goroutine's cell. Goroutines run on stacks of
// their own, at least 8 KiB apart, so the address of a local variable
// tells them apart for about a nanosecond, where a random number costs
// several.
func stripe() uint32 {
	var local byte
	p := uint32(uintptr(unsafe.Pointer(&local)) >> 13)
	return (p * 0x9e3779b1) >> (32 - stripeBits) // Fibonacci hashing: the top bits
}

// Load returns the sum of the cells.
func (s *stripedCounter) Load() uint64 {
	var n uint64
	for i := range s.cells {
		n += s.cells[i].n.Load()
	}
	return n
}

// requestCounters is the live form of Requests. L1 hits are striped; the
// other results happen on paths that talk to L2 anyway.
type requestCounters struct {
	hitL1 [NumOps]stripedCounter
	other [NumOps][NumResults]atomic.Uint64
	// ticks counts reads started, per goroutine cell, to pick the ones
	// timed for the L1 latency percentiles.
	ticks stripedCounter
}

func (q *requestCounters) add(op Op, r RequestResult, n uint64) {
	if r == ResultHitL1 {
		q.hitL1[op].Add(n)
		return
	}
	q.other[op][r].Add(n)
}

func (q *requestCounters) snapshot() Requests {
	var s Requests
	for op := range NumOps {
		for r := range NumResults {
			if r == ResultHitL1 {
				s[op][r] = q.hitL1[op].Load()
			} else {
				s[op][r] = q.other[op][r].Load()
			}
		}
	}
	return s
}

// resultOf classifies a finished read from its source and error: the one
// classifier of every answer, whose counts Counters and /metrics report.
func resultOf(src Source, err error) RequestResult {
	switch src {
	case SourceStale:
		return ResultStale
	case SourceL1:
		if err == nil || errors.Is(err, ErrNotFound) {
			return ResultHitL1
		}
	case SourceL2:
		if err == nil || errors.Is(err, ErrNotFound) {
			return ResultHitL2
		}
	case SourceLoader:
		if err == nil {
			return ResultMiss
		}
	}
	if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt) {
		return ResultMiss // a corrupt value is a miss too (and counted in Corrupt)
	}
	return ResultError
}

// l1SampleEvery: one L1 hit in this many is timed for the latency
// percentiles of Stats, so that the hit path reads no clock most of the
// time. It is a power of two.
const l1SampleEvery = 64

// observer is what the cache measures about itself beyond the counters of
// Counters, and where it reports it.
type observer struct {
	rec    Recorder     // never nil
	tracer trace.Tracer // nil when tracing is off
	system string       // "redis" or "memory", for spans
	epoch  time.Time    // monotonic origin of sampled start times

	reqs requestCounters
	lat  [numTiers]latencyWindow

	// For the tracking check of Health: when the invalidation link was
	// last lost, and when L2 last answered (unix nanoseconds).
	linkLostAt atomic.Int64
	l2OKAt     atomic.Int64

	// Failover detection for Stats: the replication ID of the master
	// last seen, and how many times it changed.
	masterMu  sync.Mutex
	masterID  string
	failovers atomic.Uint64

	warmMu sync.Mutex
	warm   []WarmRun
}

func newObserver(o Options) *observer {
	ob := &observer{rec: o.Recorder, epoch: time.Now(), system: "memory"}
	if ob.rec == nil {
		ob.rec = NopRecorder{}
	}
	if o.Redis.enabled() {
		ob.system = "redis"
	}
	if o.TracerProvider != nil {
		ob.tracer = o.TracerProvider.Tracer(tracerName)
	}
	return ob
}

// start begins a read: it returns a monotonic start time when this read is
// sampled for latency (every l1SampleEvery-th read of a goroutine cell),
// and 0 otherwise.
func (o *observer) start() int64 {
	if o.reqs.ticks.Add(1)%l1SampleEvery != 0 {
		return 0
	}
	return int64(time.Since(o.epoch)) | 1
}

// done counts a finished read, and times a sampled one answered by L1.
func (o *observer) done(op Op, src Source, err error, start int64) {
	r := ResultHitL1
	if src != SourceL1 || err != nil {
		r = resultOf(src, err)
	}
	o.reqs.add(op, r, 1)
	if start != 0 && r == ResultHitL1 {
		o.lat[tierL1].observe(time.Now().UnixNano(), time.Duration(int64(time.Since(o.epoch))-start))
	}
}

// hitL1 is done for the Fetch fast path, which knows its result.
func (o *observer) hitL1(op Op, start int64) {
	o.reqs.hitL1[op].Add(1)
	if start != 0 {
		o.lat[tierL1].observe(time.Now().UnixNano(), time.Duration(int64(time.Since(o.epoch))-start))
	}
}

// timedCall is one L2 attempt or loader call in flight.
type timedCall struct {
	start time.Time
	span  trace.Span // nil when tracing is off
}

// l2Begin starts timing (and, when on, tracing) one L2 attempt.
func (o *observer) l2Begin(ctx context.Context, op string) (context.Context, timedCall) {
	call := timedCall{start: time.Now()}
	if o.tracer != nil {
		ctx, call.span = o.startL2Span(ctx, op)
	}
	return ctx, call
}

// l2End records one L2 attempt.
func (o *observer) l2End(call timedCall, op string, err error) {
	now := time.Now()
	d := now.Sub(call.start)
	result := l2Result(err)
	if result == "ok" || result == "error" {
		// L2 answered: the link is up. Stored at most once a millisecond
		// (or at once after a lost link), so that busy goroutines do not
		// all write the same word.
		ns := now.UnixNano()
		if last := o.l2OKAt.Load(); ns-last > int64(time.Millisecond) || last <= o.linkLostAt.Load() {
			o.l2OKAt.Store(ns)
		}
	}
	o.lat[tierL2].observe(now.UnixNano(), d)
	o.rec.RecordL2(op, result, d)
	if call.span != nil {
		endSpan(call.span, err, result)
	}
}

// l2Rejected records an L2 attempt the breaker refused.
func (o *observer) l2Rejected(op string) { o.rec.RecordL2(op, "rejected", 0) }

func l2Result(err error) string {
	switch {
	case err == nil || errors.Is(err, l2.ErrNotFound):
		return "ok"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, l2.ErrUnavailable):
		return "unavailable"
	}
	return "error"
}

// loadBegin starts timing (and, when on, tracing) one loader call.
func (o *observer) loadBegin(ctx context.Context, keys int) (context.Context, timedCall) {
	call := timedCall{start: time.Now()}
	if o.tracer != nil {
		ctx, call.span = o.startLoadSpan(ctx, keys)
	}
	return ctx, call
}

// loadEnd records one loader call.
func (o *observer) loadEnd(call timedCall, err error) {
	now := time.Now()
	d := now.Sub(call.start)
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, ErrNotFound):
		result = "not_found"
	default:
		result = "error"
	}
	o.lat[tierLoader].observe(now.UnixNano(), d)
	o.rec.RecordLoad(result, d)
	if call.span != nil {
		endSpan(call.span, err, result)
	}
}

// linkLost notes that the invalidation link was lost.
func (o *observer) linkLost(now time.Time) { o.linkLostAt.Store(now.UnixNano()) }

// sent reports invalidations applied in L2; op is the caller's operation
// name ("invalidate tags", "clear").
func (o *observer) sent(op string, n int) {
	kind := "tag"
	switch op {
	case "clear":
		kind = "clear"
	case "clear softly":
		kind = "clear_soft"
	case "invalidate tags softly":
		kind = "tag_soft"
	}
	o.rec.RecordInvalidations(kind, n)
}

// replayedInvalidation reports an invalidation applied from the recovery
// queue.
func (c *Cache) replayedInvalidation(op *recOp) {
	switch {
	case op.kind == opDel:
		c.obs.rec.RecordInvalidations("delete", 1)
	case op.kind == opIncr && op.key == c.vers.nsKey:
		c.obs.rec.RecordInvalidations("clear", 1)
	case op.kind == opIncrSoft && op.key == c.vers.nsKey:
		c.obs.rec.RecordInvalidations("clear_soft", 1)
	case op.kind == opIncrSoft:
		c.obs.rec.RecordInvalidations("tag_soft", 1)
	case op.kind == opIncr:
		c.obs.rec.RecordInvalidations("tag", 1)
	}
}
