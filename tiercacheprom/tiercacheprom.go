// Package tiercacheprom exports a tiercache.Cache's metrics to Prometheus.
//
// A Recorder implements tiercache.Recorder and prometheus.Collector. Give
// it to the cache as Options.Recorder:
//
//	reg := prometheus.NewRegistry()
//	rec, err := tiercacheprom.New(reg, tiercacheprom.Options{})
//	...
//	c, err := tiercache.New(tiercache.Options{Recorder: rec, ...})
//
// Events with a duration (L2 operations, loader calls, warming runs) are
// observed as they happen, into histograms and counters. Everything the
// cache counts itself (requests by operation and result, invalidations
// received, the breaker, the recovery queue, the L1 size) and Redis INFO
// per node are read when Prometheus scrapes, with one Cache.Stats call:
// an L1 hit costs nothing more with a Recorder than without.
//
// Every metric is named tiercache_*; docs/metrics.md lists them. Labels
// take a few fixed values, Redis node addresses and warming strategy names;
// keys are never labels.
package tiercacheprom

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
)

// Bucket defaults, in seconds.
var (
	// DefaultL2Buckets span a loopback round trip to a slow network.
	DefaultL2Buckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}
	// DefaultLoaderBuckets span a cached query to a slow backend.
	DefaultLoaderBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// DefaultJournalBuckets span an fsync on fast local storage to a slow
	// network volume.
	DefaultJournalBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}
	// DefaultCoherenceBuckets span an invalidation on loopback to one
	// that took longer than the canary's default MissAfter.
	DefaultCoherenceBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	// DefaultWarmBuckets span a small warming run to a long one.
	DefaultWarmBuckets = []float64{.1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}
)

// DefaultRedisTimeout is the Options.RedisTimeout used when it is zero.
const DefaultRedisTimeout = 2 * time.Second

// Options configure a Recorder. The zero value is usable.
type Options struct {
	// ConstLabels are added to every metric, for example
	// {"cache": "users"} to tell two caches apart in one registry. Nil
	// means none.
	ConstLabels prometheus.Labels

	// RedisTimeout bounds the Redis round trips (PING and INFO per node)
	// of one scrape. Zero means DefaultRedisTimeout.
	RedisTimeout time.Duration

	// L2Buckets, LoaderBuckets and WarmBuckets are the histogram buckets,
	// in seconds. Nil means the Default*Buckets.
	L2Buckets, LoaderBuckets, WarmBuckets []float64
}

// Recorder is a tiercache.Recorder that exports to Prometheus. It serves
// one cache; create one per cache, with distinct ConstLabels when they
// share a registry.
type Recorder struct {
	cache   atomic.Pointer[tiercache.Cache]
	timeout time.Duration

	l2Duration     *prometheus.HistogramVec
	l2Ops          *prometheus.CounterVec
	loaderDuration prometheus.Histogram
	loaderCalls    *prometheus.CounterVec
	invSent        *prometheus.CounterVec
	breakerChanges *prometheus.CounterVec
	warmRuns       *prometheus.CounterVec
	warmKeys       *prometheus.CounterVec
	warmDuration   *prometheus.HistogramVec
	warmLast       *prometheus.GaugeVec
	journalSync    prometheus.Histogram
	journalQuar    *prometheus.CounterVec
	journalRestore prometheus.Counter
	coherenceLag   prometheus.Histogram

	// Children for the fixed label values, resolved once in New, so that
	// recording does not hash labels; an unexpected value falls back to
	// WithLabelValues.
	l2Obs      map[string]prometheus.Observer
	l2Count    map[[2]string]prometheus.Counter
	loadCount  map[string]prometheus.Counter
	invCount   map[string]prometheus.Counter
	breakCount map[tiercache.BreakerState]prometheus.Counter

	scraped scraped
}

var (
	_ tiercache.Recorder   = (*Recorder)(nil)
	_ prometheus.Collector = (*Recorder)(nil)
)

// l2Ops and l2Results are the values RecordL2 receives.
var (
	l2OpNames     = []string{"get", "mget", "set", "mset", "del", "incr", "setnx", "lock", "unlock", "cas"}
	l2ResultNames = []string{"ok", "error", "unavailable", "canceled", "rejected"}
)

// New builds a Recorder and, when reg is not nil, registers it there.
// With a nil reg, register it yourself (it is a prometheus.Collector).
func New(reg prometheus.Registerer, opts Options) (*Recorder, error) {
	if opts.RedisTimeout < 0 {
		return nil, errors.New("tiercacheprom: RedisTimeout is negative")
	}
	if opts.RedisTimeout == 0 {
		opts.RedisTimeout = DefaultRedisTimeout
	}
	buckets := func(b, def []float64) []float64 {
		if b == nil {
			return def
		}
		return b
	}
	cl := opts.ConstLabels
	r := &Recorder{
		timeout: opts.RedisTimeout,
		l2Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tiercache_l2_operation_duration_seconds", ConstLabels: cl,
			Help:    "Duration of L2 operation attempts that reached L2, by operation.",
			Buckets: buckets(opts.L2Buckets, DefaultL2Buckets),
		}, []string{"op"}),
		l2Ops: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tiercache_l2_operations_total", ConstLabels: cl,
			Help: "L2 operation attempts by operation and result (ok, error, unavailable, canceled, rejected by the breaker).",
		}, []string{"op", "result"}),
		loaderDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tiercache_loader_duration_seconds", ConstLabels: cl,
			Help:    "Duration of loader calls (one key for Fetch, one batch for FetchMany).",
			Buckets: buckets(opts.LoaderBuckets, DefaultLoaderBuckets),
		}),
		loaderCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tiercache_loader_calls_total", ConstLabels: cl,
			Help: "Loader calls by result (ok, not_found, error).",
		}, []string{"result"}),
		invSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tiercache_invalidations_sent_total", ConstLabels: cl,
			Help: "Invalidations this instance applied in L2, by kind (tag, clear, delete).",
		}, []string{"kind"}),
		breakerChanges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tiercache_breaker_transitions_total", ConstLabels: cl,
			Help: "State changes of the circuit breaker around L2, by new state.",
		}, []string{"to"}),
		warmRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tiercache_warm_runs_total", ConstLabels: cl,
			Help: "Warming runs by strategy and result (ok, error).",
		}, []string{"strategy", "result"}),
		warmKeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tiercache_warm_keys_total", ConstLabels: cl,
			Help: "Keys handled by warming runs, by strategy and result (written, failed).",
		}, []string{"strategy", "result"}),
		warmDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tiercache_warm_duration_seconds", ConstLabels: cl,
			Help:    "Wall time of warming runs, by strategy.",
			Buckets: buckets(opts.WarmBuckets, DefaultWarmBuckets),
		}, []string{"strategy"}),
		warmLast: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tiercache_warm_last_run_timestamp_seconds", ConstLabels: cl,
			Help: "When the last warming run of a strategy finished, as a Unix time.",
		}, []string{"strategy"}),
		journalSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tiercache_recovery_journal_sync_duration_seconds", ConstLabels: cl,
			Help:    "Duration of recovery journal fsyncs (appends of queued operations, and compactions).",
			Buckets: DefaultJournalBuckets,
		}),
		journalQuar: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tiercache_recovery_journal_quarantined_total", ConstLabels: cl,
			Help: "Recovery journals moved aside at start, by reason (corrupt, truncated, namespace).",
		}, []string{"reason"}),
		journalRestore: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tiercache_recovery_journal_restored_total", ConstLabels: cl,
			Help: "Operations read back from the recovery journal at start and queued again.",
		}),
		coherenceLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tiercache_coherence_lag_seconds", ConstLabels: cl,
			Help:    "Coherence canary: time from another instance's marker write to its invalidation reaching this instance, on Redis's clock.",
			Buckets: DefaultCoherenceBuckets,
		}),
		l2Obs:      map[string]prometheus.Observer{},
		l2Count:    map[[2]string]prometheus.Counter{},
		loadCount:  map[string]prometheus.Counter{},
		invCount:   map[string]prometheus.Counter{},
		breakCount: map[tiercache.BreakerState]prometheus.Counter{},
		scraped:    newScraped(cl),
	}
	for _, op := range l2OpNames {
		r.l2Obs[op] = r.l2Duration.WithLabelValues(op)
		for _, res := range l2ResultNames {
			r.l2Count[[2]string{op, res}] = r.l2Ops.WithLabelValues(op, res)
		}
	}
	for _, res := range []string{"ok", "not_found", "error"} {
		r.loadCount[res] = r.loaderCalls.WithLabelValues(res)
	}
	for _, k := range []string{"tag", "clear", "delete", "tag_soft", "clear_soft", "delete_soft"} {
		r.invCount[k] = r.invSent.WithLabelValues(k)
	}
	for _, reason := range []string{"corrupt", "truncated", "namespace"} {
		r.journalQuar.WithLabelValues(reason)
	}
	for _, s := range []tiercache.BreakerState{tiercache.BreakerClosed, tiercache.BreakerOpen, tiercache.BreakerHalfOpen} {
		r.breakCount[s] = r.breakerChanges.WithLabelValues(string(s))
	}
	if reg != nil {
		if err := reg.Register(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Must is New that panics on error.
func Must(reg prometheus.Registerer, opts Options) *Recorder {
	r, err := New(reg, opts)
	if err != nil {
		panic(err)
	}
	return r
}

// Attach implements tiercache.Recorder: the cache whose counters and
// Redis nodes are read at each scrape. A later Attach replaces it.
func (r *Recorder) Attach(c *tiercache.Cache) { r.cache.Store(c) }

// RecordL2 implements tiercache.Recorder.
func (r *Recorder) RecordL2(op, result string, d time.Duration) {
	if c, ok := r.l2Count[[2]string{op, result}]; ok {
		c.Inc()
	} else {
		r.l2Ops.WithLabelValues(op, result).Inc()
	}
	if result == "rejected" {
		return // L2 was not asked
	}
	if o, ok := r.l2Obs[op]; ok {
		o.Observe(d.Seconds())
	} else {
		r.l2Duration.WithLabelValues(op).Observe(d.Seconds())
	}
}

// RecordLoad implements tiercache.Recorder.
func (r *Recorder) RecordLoad(result string, d time.Duration) {
	if c, ok := r.loadCount[result]; ok {
		c.Inc()
	} else {
		r.loaderCalls.WithLabelValues(result).Inc()
	}
	r.loaderDuration.Observe(d.Seconds())
}

// RecordInvalidations implements tiercache.Recorder.
func (r *Recorder) RecordInvalidations(kind string, n int) {
	if c, ok := r.invCount[kind]; ok {
		c.Add(float64(n))
	} else {
		r.invSent.WithLabelValues(kind).Add(float64(n))
	}
}

// RecordBreaker implements tiercache.Recorder.
func (r *Recorder) RecordBreaker(to tiercache.BreakerState) {
	if c, ok := r.breakCount[to]; ok {
		c.Inc()
	} else {
		r.breakerChanges.WithLabelValues(string(to)).Inc()
	}
}

// RecordWarm implements tiercache.Recorder.
func (r *Recorder) RecordWarm(strategy string, keys, failed int, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	r.warmRuns.WithLabelValues(strategy, result).Inc()
	r.warmKeys.WithLabelValues(strategy, "written").Add(float64(keys))
	r.warmKeys.WithLabelValues(strategy, "failed").Add(float64(failed))
	r.warmDuration.WithLabelValues(strategy).Observe(d.Seconds())
	r.warmLast.WithLabelValues(strategy).Set(float64(time.Now().UnixNano()) / 1e9)
}

// RecordJournalSync implements tiercache.Recorder.
func (r *Recorder) RecordJournalSync(d time.Duration) { r.journalSync.Observe(d.Seconds()) }

// RecordJournalQuarantine implements tiercache.Recorder.
func (r *Recorder) RecordJournalQuarantine(reason string) {
	r.journalQuar.WithLabelValues(reason).Inc()
}

// RecordJournalRestored implements tiercache.Recorder.
func (r *Recorder) RecordJournalRestored(n int) { r.journalRestore.Add(float64(n)) }

// RecordCoherenceLag implements tiercache.Recorder.
func (r *Recorder) RecordCoherenceLag(d time.Duration) { r.coherenceLag.Observe(d.Seconds()) }

func (r *Recorder) vecs() []prometheus.Collector {
	return []prometheus.Collector{
		r.l2Duration, r.l2Ops, r.loaderDuration, r.loaderCalls, r.invSent,
		r.breakerChanges, r.warmRuns, r.warmKeys, r.warmDuration, r.warmLast,
		r.journalSync, r.journalQuar, r.journalRestore, r.coherenceLag,
	}
}

// Describe implements prometheus.Collector.
func (r *Recorder) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range r.vecs() {
		v.Describe(ch)
	}
	r.scraped.describe(ch)
}

// Collect implements prometheus.Collector. It calls Cache.Stats, which
// asks every Redis node for INFO within Options.RedisTimeout.
func (r *Recorder) Collect(ch chan<- prometheus.Metric) {
	for _, v := range r.vecs() {
		v.Collect(ch)
	}
	c := r.cache.Load()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	rep, err := c.Stats(ctx)
	if err != nil {
		// Closed: the counters are still worth exporting.
		rep = tiercache.Stats{Counters: c.Counters()}
	}
	r.scraped.collect(ch, &rep)
}
