// Package loadgen generates load against a cache: the HTTP service
// (NewHTTP) or a tiercache.Cache in process (NewLibrary). It is the engine
// of `tiercache bench` and of the service's Go benchmarks.
//
// A run draws keys from a uniform or zipf distribution, picks reads,
// writes and deletes by a weighted mix, and records every operation's
// latency in an HDR histogram (github.com/HdrHistogram/hdrhistogram-go),
// the tier that answered each read and the kind of every failure.
//
// Without a rate, each worker sends its next operation when the previous
// one returns (closed model): the load adapts to the target's speed. With
// a rate (Config.Rate), operations are scheduled at fixed intended times
// and each latency is measured from its intended start, so that a target
// that falls behind shows its queueing in the percentiles instead of
// slowing the generator down (open model; no coordinated omission).
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Op is a kind of operation.
type Op uint8

// Operations of a mix.
const (
	OpGet Op = iota
	OpSet
	OpDelete
)

func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	}
	return "get"
}

// Outcome is what a Worker reports of one operation.
type Outcome struct {
	// Tier is where a read was answered from: "hit-l1", "hit-l2",
	// "loader", "stale" or "miss". Empty for writes and failures.
	Tier string
	// Err classifies a failure: empty on success, else a short kind such
	// as "status_503", "timeout", "connection" or "unavailable".
	Err string
	// Queued reports a write accepted into the recovery queue (HTTP 202,
	// tiercache.ErrQueued) instead of written to Redis.
	Queued bool
}

// Target is what a run loads.
type Target interface {
	// Name is "http" or "library".
	Name() string
	// Worker returns the operations of worker i. Each worker goroutine
	// calls only its own Worker, one operation at a time.
	Worker(i int) Worker
	// Close releases the target's connections.
	Close() error
}

// Worker performs operations for one worker goroutine.
type Worker interface {
	Do(ctx context.Context, op Op, key string, value []byte) Outcome
}

// Mix weighs the operations: out of Get+Set+Delete operations, Get are
// reads, Set writes and Delete deletes.
type Mix struct {
	Get, Set, Delete int
}

// ParseMix reads "read:write:delete" weights such as "90:10:0" (or
// "90:10", no deletes).
func ParseMix(s string) (Mix, error) {
	var w [3]int
	parts := splitColon(s)
	if len(parts) < 2 || len(parts) > 3 {
		return Mix{}, fmt.Errorf("mix %q: want read:write or read:write:delete weights such as 90:10:0", s)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Mix{}, fmt.Errorf("mix %q: %q is not a weight (a whole number, 0 or more)", s, p)
		}
		w[i] = n
	}
	m := Mix{Get: w[0], Set: w[1], Delete: w[2]}
	if m.total() == 0 {
		return Mix{}, fmt.Errorf("mix %q: the weights add up to 0", s)
	}
	return m, nil
}

func (m Mix) total() int { return m.Get + m.Set + m.Delete }

func (m Mix) String() string {
	return fmt.Sprintf("%d:%d:%d", m.Get, m.Set, m.Delete)
}

func splitColon(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ':' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

// Distributions of the keys.
const (
	Uniform = "uniform"
	Zipf    = "zipf"
)

// Config describes a run. Zero fields take the defaults in the comments.
type Config struct {
	Keys      int     // distinct keys; default 10,000
	KeyPrefix string  // keys are KeyPrefix + index; default "bench:"
	Dist      string  // Uniform (default) or Zipf
	ZipfS     float64 // zipf exponent, > 1; default 1.01. Key 0 is the hottest.
	Mix       Mix     // default 90:10:0
	ValueSize int     // bytes written by each Set; default 100
	Workers   int     // goroutines with one operation in flight each; default 16

	// Duration and Requests end the run, whichever comes first; at least
	// one of them must be set.
	Duration time.Duration
	Requests int64

	// Rate, when positive, is the offered load in operations per second
	// (open model); zero runs each worker as fast as the target answers.
	Rate float64

	// TimeLimit stops the run however far it got, in case the target
	// stops answering; operations not sent by then are counted as
	// Report.Unsent. Zero means Duration + 30s, or none without one.
	TimeLimit time.Duration

	// Seed makes the key and operation choices reproducible.
	Seed uint64

	// Progress, when set, is called about once a second with the figures
	// of the run so far.
	Progress func(Progress)
}

// Progress is a running count, passed to Config.Progress.
type Progress struct {
	Elapsed time.Duration
	Ops     int64         // operations finished so far
	Rate    float64       // operations per second over the last interval
	P99     time.Duration // of the last interval
	Errors  int64         // failures so far
}

func (c *Config) defaults() error {
	if c.Keys == 0 {
		c.Keys = 10_000
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = "bench:"
	}
	if c.Dist == "" {
		c.Dist = Uniform
	}
	if c.ZipfS == 0 {
		c.ZipfS = 1.01
	}
	if c.Mix.total() == 0 {
		c.Mix = Mix{Get: 90, Set: 10}
	}
	if c.ValueSize == 0 {
		c.ValueSize = 100
	}
	if c.Workers == 0 {
		c.Workers = 16
	}
	if c.TimeLimit == 0 && c.Duration > 0 {
		c.TimeLimit = c.Duration + 30*time.Second
	}
	return c.check()
}

func (c *Config) check() error {
	switch {
	case c.Keys < 1:
		return fmt.Errorf("keys %d: at least 1", c.Keys)
	case c.Dist != Uniform && c.Dist != Zipf:
		return fmt.Errorf("distribution %q: uniform or zipf", c.Dist)
	case c.Dist == Zipf && c.ZipfS <= 1:
		return fmt.Errorf("zipf exponent %g: must be greater than 1", c.ZipfS)
	case c.Mix.Get < 0 || c.Mix.Set < 0 || c.Mix.Delete < 0:
		return fmt.Errorf("mix %s: negative weight", c.Mix)
	case c.ValueSize < 0:
		return fmt.Errorf("value size %d is negative", c.ValueSize)
	case c.Workers < 1:
		return fmt.Errorf("workers %d: at least 1", c.Workers)
	case c.Duration < 0 || c.Requests < 0 || c.Rate < 0 || c.TimeLimit < 0:
		return errors.New("duration, requests, rate and time limit must not be negative")
	case c.Duration == 0 && c.Requests == 0:
		return errors.New("set a duration or a number of requests")
	}
	return checkPrefix(c.KeyPrefix)
}

// checkPrefix keeps keys to characters that need no escaping in a URL
// path, so that the HTTP target sends them as they are.
func checkPrefix(p string) error {
	for _, r := range p {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			r == '.' || r == '_' || r == '-' || r == ':' || r == '/'
		if !ok {
			return fmt.Errorf("key prefix %q: only letters, digits and . _ - : / are allowed", p)
		}
	}
	return nil
}

// keySet is the run's keys and the way of drawing them.
type keySet struct {
	names []string
	dist  string
	s     float64
}

func newKeySet(c *Config) *keySet {
	names := make([]string, c.Keys)
	for i := range names {
		names[i] = c.KeyPrefix + strconv.Itoa(i)
	}
	return &keySet{names: names, dist: c.Dist, s: c.ZipfS}
}

// chooser draws keys and operations for one worker; not safe for
// concurrent use.
type chooser struct {
	keys *keySet
	mix  Mix
	rng  *rand.Rand
	zipf *rand.Zipf
}

func (k *keySet) chooser(mix Mix, seed uint64, worker int) *chooser {
	rng := rand.New(rand.NewPCG(seed, uint64(worker)+1))
	ch := &chooser{keys: k, mix: mix, rng: rng}
	if k.dist == Zipf {
		ch.zipf = rand.NewZipf(rng, k.s, 1, uint64(len(k.names)-1))
	}
	return ch
}

func (ch *chooser) key() string {
	if ch.zipf != nil {
		return ch.keys.names[ch.zipf.Uint64()]
	}
	return ch.keys.names[ch.rng.IntN(len(ch.keys.names))]
}

func (ch *chooser) op() Op {
	n := ch.rng.IntN(ch.mix.total())
	switch {
	case n < ch.mix.Get:
		return OpGet
	case n < ch.mix.Get+ch.mix.Set:
		return OpSet
	}
	return OpDelete
}

// value returns n random bytes, the payload of every write.
func value(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + rng.IntN(26)) // printable, so a curl of a key shows it
	}
	return b
}

// Run loads t as cfg says and reports what it measured. It returns an
// error only for a bad Config; failures of the target are counted in the
// Report. Cancelling ctx ends the run early with what was measured.
func Run(ctx context.Context, t Target, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := newRunner(t, &cfg)
	return r.run(ctx), nil
}

// runner is one run's shared state.
type runner struct {
	target Target
	cfg    *Config
	keys   *keySet
	value  []byte
	stats  *stats

	start    time.Time
	interval time.Duration // between two intended starts (open model)
	issued   atomic.Int64  // operations claimed by workers
	unsent   atomic.Int64  // claimed but not sent before the time limit
}

func newRunner(t Target, cfg *Config) *runner {
	r := &runner{target: t, cfg: cfg, keys: newKeySet(cfg), value: value(cfg.ValueSize, cfg.Seed), stats: newStats(cfg.Workers)}
	if cfg.Rate > 0 {
		r.interval = time.Duration(float64(time.Second) / cfg.Rate)
		if r.interval <= 0 {
			r.interval = 1
		}
	}
	return r
}

func (r *runner) run(ctx context.Context) *Report {
	if r.cfg.TimeLimit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.TimeLimit)
		defer cancel()
	}
	r.start = time.Now()
	stopProgress := r.progress()
	var wg sync.WaitGroup
	for i := range r.cfg.Workers {
		wg.Go(func() { r.work(ctx, i) })
	}
	wg.Wait()
	elapsed := time.Since(r.start)
	stopProgress()
	return r.report(elapsed)
}

// work is worker i's loop.
func (r *runner) work(ctx context.Context, i int) {
	w := r.target.Worker(i)
	ch := r.keys.chooser(r.cfg.Mix, r.cfg.Seed, i)
	sh := r.stats.shard(i)
	end := r.start.Add(r.cfg.Duration)
	var sleep sleeper
	if r.interval > 0 {
		defer func() {
			if ctx.Err() != nil {
				r.countUnsent()
			}
		}()
	}
	for ctx.Err() == nil {
		seq := r.issued.Add(1) - 1
		if r.cfg.Requests > 0 && seq >= r.cfg.Requests {
			return
		}
		begin := time.Now()
		if r.interval > 0 {
			begin = r.start.Add(time.Duration(seq) * r.interval)
			if r.cfg.Duration > 0 && !begin.Before(end) {
				return
			}
			if !sleep.until(ctx, begin) {
				r.unsent.Add(1)
				return
			}
		} else if r.cfg.Duration > 0 && !begin.Before(end) {
			return
		}
		op := ch.op()
		out := w.Do(ctx, op, ch.key(), r.value)
		if ctx.Err() != nil && out.Err != "" {
			r.unsent.Add(1) // cut by the time limit or the caller: not the target's failure
			return
		}
		sh.record(op, out, time.Since(begin))
	}
}

// countUnsent counts, once the time limit struck, the operations the
// schedule still held: they were due but never sent.
func (r *runner) countUnsent() {
	due := r.cfg.Requests
	if r.cfg.Duration > 0 {
		byTime := int64(r.cfg.Duration / r.interval)
		if due == 0 || byTime < due {
			due = byTime
		}
	}
	for {
		cur := r.issued.Load()
		if cur >= due || r.issued.CompareAndSwap(cur, due) {
			if cur < due {
				r.unsent.Add(due - cur)
			}
			return
		}
	}
}

// sleeper waits for a worker's intended start times with one reusable
// timer: with thousands of workers, a timer made and dropped per
// operation is a cost of its own.
type sleeper struct{ timer *time.Timer }

// until waits until t, and reports false when ctx ended first.
func (s *sleeper) until(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	if s.timer == nil {
		s.timer = time.NewTimer(d)
	} else {
		s.timer.Reset(d) // Go 1.23+ timers: no stale value to drain
	}
	select {
	case <-s.timer.C:
		return true
	case <-ctx.Done():
		s.timer.Stop()
		return false
	}
}

// progress calls cfg.Progress once a second until the returned function
// is called.
func (r *runner) progress() (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				ops, errs, p99 := r.stats.interval()
				secs := now.Sub(last).Seconds()
				last = now
				r.cfg.Progress(Progress{
					Elapsed: now.Sub(r.start), Ops: r.stats.totalOps(), Rate: float64(ops) / secs,
					P99: p99, Errors: errs,
				})
			}
		}
	}()
	return func() { close(done); <-finished }
}
