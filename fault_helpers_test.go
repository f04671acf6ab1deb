package tiercache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// The fault-injection suite (fault_test.go) drives several Cache instances
// with concurrent readers and writers while a fault hits Redis, logs every
// call with its start, end, value and error, and checks the log once Redis
// is back. This file holds the load, the log and the checker.

const (
	faultKeys   = 16 // the load works on k00..k15
	faultGroups = 4  // key i carries the tag g<i%4>
	// faultWriters is how many of the instances write; the others only
	// read.
	faultWriters = 2
	// faultSlack is added to every call's time bound: scheduling on a
	// loaded two-core machine under -race.
	faultSlack = 2 * time.Second
	// faultGrace is how long another instance may still serve a value
	// after an invalidation was acknowledged (docs/consistency.md,
	// guarantee 2: measured p99 ≈ 4 ms on loopback).
	faultGrace = 500 * time.Millisecond
)

func faultKey(i int) string { return fmt.Sprintf("k%02d", i) }
func faultTag(i int) string { return fmt.Sprintf("g%d", i%faultGroups) }

// never is later than any time of a test run.
var never = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// faultOptions are the options of every cache in the scenarios: a short
// per-operation timeout, two retries, the default breaker (open after 5
// failures, a probe every 200 ms), and fail-safe.
func faultOptions(ns string, r RedisOptions) Options {
	return Options{
		Namespace:        ns,
		Redis:            r,
		Logger:           slog.New(slog.DiscardHandler),
		OperationTimeout: 500 * time.Millisecond,
		Retries:          2,
		RetryBackoff:     20 * time.Millisecond,
		FailSafe:         FailSafeOptions{MaxDuration: time.Hour},
	}
}

// faultOp is the kind of a logged call.
type faultOp uint8

const (
	fGet    faultOp = iota // Lookup
	fFetch                 // FetchResult, or one key of FetchManyResult
	fSet                   // Set
	fDelete                // Delete
	fTags                  // InvalidateTags (key holds the tag)
	fClear                 // Clear
	fLoad                  // a loader call made by Fetch (a write, if cached)
)

var faultOpNames = [...]string{"get", "fetch", "set", "delete", "tags", "clear", "load"}

func (o faultOp) String() string { return faultOpNames[o] }
func (o faultOp) read() bool     { return o == fGet || o == fFetch }
func (o faultOp) write() bool    { return o >= fSet && o <= fClear }
func (o faultOp) removes() bool  { return o == fDelete || o == fTags || o == fClear }

// faultBound is how long a call may take: each L2 operation it makes may
// use every attempt (OperationTimeout × (Retries+1) plus the backoff). A Get
// makes at most two (the value, then its tag versions); a Set four (read
// the versions, create missing ones, read them again, write); a Fetch six
// (a Get, then caching what the loader returned); Delete one. Increments
// (InvalidateTags, Clear) are never retried.
func faultBound(o Options, op faultOp) time.Duration {
	perOp := o.OperationTimeout*time.Duration(o.Retries+1) + o.RetryBackoff*time.Duration(1<<o.Retries-1)
	ops := map[faultOp]int{fGet: 2, fSet: 4, fFetch: 6, fDelete: 1}[op]
	if op == fTags || op == fClear {
		return o.OperationTimeout + faultSlack
	}
	return time.Duration(ops)*perOp + faultSlack
}

// errClass names the typed error a call returned; "untyped" fails the test.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrNotFound):
		return "not-found"
	case errors.Is(err, ErrQueued):
		return "queued"
	case errors.Is(err, ErrQueueFull):
		return "queue-full"
	case errors.Is(err, ErrCircuitOpen):
		return "circuit-open"
	case errors.Is(err, ErrLoaderTimeout):
		return "loader-timeout"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "context"
	}
	return "untyped"
}

// faultRec is one logged call.
type faultRec struct {
	op         faultOp
	inst       int
	key        string // the key; the tag for fTags; "" for fClear
	seq        int64  // the value written, read or loaded; 0 for none
	stale      bool   // a read flagged stale
	start, end time.Time
	err        error
}

// faultLog is the log of every call of a scenario. Every value written is
// a fresh sequence number, so a read names the one write it came from.
type faultLog struct {
	mu   sync.Mutex
	recs []faultRec
	seq  atomic.Int64
}

func (l *faultLog) next() int64 { return l.seq.Add(1) }

func (l *faultLog) add(r faultRec) {
	l.mu.Lock()
	l.recs = append(l.recs, r)
	l.mu.Unlock()
}

func (l *faultLog) snapshot() []faultRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]faultRec(nil), l.recs...)
}

// faultLoad runs, on each cache, three readers (Lookup or FetchResult of a
// random key); on the first faultWriters caches, two writers each (70% Set,
// 15% Delete, 15% InvalidateTags) and one goroutine that calls Clear every
// second on each of them in turn. The other caches only read, as the
// read-mostly instances of a fleet do: nothing but invalidations from
// Redis drops their L1 entries, so they are the ones fail-safe serves from.
type faultLoad struct {
	t      *testing.T
	caches []*Cache
	log    *faultLog
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startFaultLoad(t *testing.T, caches []*Cache, log *faultLog) *faultLoad {
	ld := &faultLoad{t: t, caches: caches, log: log, stop: make(chan struct{})}
	seed := uint64(time.Now().UnixNano())
	for inst := range caches {
		for r := range 3 {
			ld.spawn(func() { ld.reader(inst, seed+uint64(inst*10+r)) })
		}
		for w := range 2 {
			if inst < faultWriters {
				ld.spawn(func() { ld.writer(inst, seed+uint64(inst*10+5+w)) })
			}
		}
	}
	ld.spawn(ld.clearer)
	return ld
}

func (ld *faultLoad) spawn(fn func()) {
	ld.wg.Add(1)
	go func() {
		defer ld.wg.Done()
		defer func() {
			if r := recover(); r != nil {
				ld.t.Errorf("panic under load: %v\n%s", r, debug.Stack())
			}
		}()
		fn()
	}()
}

// halt stops the load and waits for every call in flight.
func (ld *faultLoad) halt() {
	close(ld.stop)
	ld.wg.Wait()
}

// pause paces a load goroutine; it reports false once the load stops.
func (ld *faultLoad) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ld.stop:
		return false
	case <-t.C:
		return true
	}
}

// do runs one call and logs it. fn returns the value it wrote or read.
func (ld *faultLoad) do(inst int, op faultOp, key string, fn func(ctx context.Context) (int64, bool, error)) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	seq, stale, err := fn(ctx)
	ld.log.add(faultRec{op: op, inst: inst, key: key, seq: seq, stale: stale, start: start, end: time.Now(), err: err})
}

// loader returns a fresh value for each call and logs it as a write.
func (ld *faultLoad) loader(inst int) LoaderFunc[int64] {
	return func(_ context.Context, key string) (int64, error) {
		s := ld.log.next()
		now := time.Now()
		ld.log.add(faultRec{op: fLoad, inst: inst, key: key, seq: s, start: now, end: now})
		return s, nil
	}
}

// batchLoader is loader for FetchMany: one fresh value per key, each
// logged as a write.
func (ld *faultLoad) batchLoader(inst int) BatchLoaderFunc[int64] {
	load := ld.loader(inst)
	return func(ctx context.Context, keys []string) (map[string]int64, error) {
		out := make(map[string]int64, len(keys))
		for _, k := range keys {
			out[k], _ = load(ctx, k)
		}
		return out, nil
	}
}

// fetchMany reads two keys of one tag group with FetchManyResult and logs
// one fFetch record per key, with that key's stale flag. A key missing
// from the answer is logged as not found, or with the call's error when
// it failed (FetchMany does not say which keys failed).
func (ld *faultLoad) fetchMany(inst int, c *Cache, rng *rand.Rand, load BatchLoaderFunc[int64]) {
	i := rng.IntN(faultKeys)
	j := (i + faultGroups) % faultKeys // same tag: one WithTags for the batch
	keys := []string{faultKey(i), faultKey(j)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	vals, res, err := FetchManyResult(ctx, c, keys, load, WithTags(faultTag(i)))
	end := time.Now()
	for _, k := range keys {
		r := faultRec{op: fFetch, inst: inst, key: k, start: start, end: end}
		if v, ok := vals[k]; ok {
			r.seq, r.stale = v, res[k].Stale
		} else if err != nil {
			r.err = err
		} else {
			r.err = ErrNotFound
		}
		ld.log.add(r)
	}
}

func (ld *faultLoad) reader(inst int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	c, load, batch := ld.caches[inst], ld.loader(inst), ld.batchLoader(inst)
	for {
		i := rng.IntN(faultKeys)
		k := faultKey(i)
		if rng.IntN(3) == 0 {
			ld.fetchMany(inst, c, rng, batch)
		} else if rng.IntN(2) == 0 {
			ld.do(inst, fGet, k, func(ctx context.Context) (int64, bool, error) {
				var v int64
				res, err := c.Lookup(ctx, k, &v)
				return v, res.Stale, err
			})
		} else {
			ld.do(inst, fFetch, k, func(ctx context.Context) (int64, bool, error) {
				v, res, err := FetchResult(ctx, c, k, load, WithTags(faultTag(i)))
				return v, res.Stale, err
			})
		}
		if !ld.pause(2 * time.Millisecond) {
			return
		}
	}
}

func (ld *faultLoad) writer(inst int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	c := ld.caches[inst]
	for {
		i := rng.IntN(faultKeys)
		k, tag := faultKey(i), faultTag(i)
		switch r := rng.IntN(100); {
		case r < 70:
			s := ld.log.next()
			ld.do(inst, fSet, k, func(ctx context.Context) (int64, bool, error) {
				return s, false, c.Set(ctx, k, s, WithTags(tag))
			})
		case r < 85:
			ld.do(inst, fDelete, k, func(ctx context.Context) (int64, bool, error) {
				return 0, false, c.Delete(ctx, k)
			})
		default:
			ld.do(inst, fTags, tag, func(ctx context.Context) (int64, bool, error) {
				return 0, false, c.InvalidateTags(ctx, tag)
			})
		}
		if !ld.pause(5 * time.Millisecond) {
			return
		}
	}
}

func (ld *faultLoad) clearer() {
	for n := 0; ld.pause(time.Second); n++ {
		inst := n % faultWriters
		ld.do(inst, fClear, "", func(ctx context.Context) (int64, bool, error) {
			return 0, false, ld.caches[inst].Clear(ctx)
		})
	}
}

// faultMonitor samples each cache's recovery queue length and breaker
// state every 2 ms. A queued operation has been applied by the first
// sample after it was queued that finds the queue empty.
type faultMonitor struct {
	caches []*Cache
	mu     sync.Mutex
	at     [][]time.Time // per cache
	qlen   [][]int
	open   []int // samples with the breaker open, per cache
	peak   []int
	stop   chan struct{}
	done   chan struct{}
}

func startFaultMonitor(caches []*Cache) *faultMonitor {
	n := len(caches)
	m := &faultMonitor{caches: caches, at: make([][]time.Time, n), qlen: make([][]int, n),
		open: make([]int, n), peak: make([]int, n), stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	return m
}

func (m *faultMonitor) run() {
	defer close(m.done)
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		m.mu.Lock()
		for i, c := range m.caches {
			n := c.QueueLength()
			m.at[i] = append(m.at[i], time.Now())
			m.qlen[i] = append(m.qlen[i], n)
			m.peak[i] = max(m.peak[i], n)
			if c.BreakerState() == BreakerOpen {
				m.open[i]++
			}
		}
		m.mu.Unlock()
	}
}

func (m *faultMonitor) halt() {
	close(m.stop)
	<-m.done
}

// drainedAfter returns the first time after t at which cache inst's queue
// was seen empty, or never.
func (m *faultMonitor) drainedAfter(inst int, t time.Time) time.Time {
	at, q := m.at[inst], m.qlen[inst]
	for j := sort.Search(len(at), func(j int) bool { return at[j].After(t) }); j < len(at); j++ {
		if q[j] == 0 {
			return at[j]
		}
	}
	return never
}

// checkNoLeaks registers, as the test's last cleanup, a check that every
// goroutine started since has ended. rueidis ends some work in the
// background after Close (a cluster client closes the connections a
// topology change dropped five seconds later), so it polls goleak.Find with
// a deadline rather than failing at once. Goroutines that existed before
// the call (earlier tests' stragglers) are not this test's.
//
// Goroutines of the test proxy's links are ignored: in toxiproxy v2.12.0,
// when a link's writer stops on a write error (its peer was reset), the
// stages in front of it can stay blocked for good sending their last chunk
// (toxics/noop.go:16, toxics/latency.go:44, stream/io_chan.go:29). They
// belong to the harness and hold nothing of the cache's: a connection the
// cache failed to close would leave rueidis's goroutines, which are not
// ignored.
func checkNoLeaks(t *testing.T) {
	ignore := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2/toxics.(*ToxicStub).Run"),
		goleak.IgnoreAnyFunction("github.com/Shopify/toxiproxy/v2.(*ToxicLink).read")}
	t.Cleanup(func() {
		deadline := time.Now().Add(20 * time.Second)
		for {
			err := goleak.Find(ignore...)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("goroutines outlived the test: %v", err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// faultFindings are what the checker measured in one scenario.
type faultFindings struct {
	calls      map[string]int // by op/class, e.g. "set/queued"
	errs       map[string]int // errors by class, all ops
	stale      int            // reads answered with a value flagged stale
	maxDur     map[faultOp]time.Duration
	outage     time.Duration // the longest write outage of one instance
	violations []string      // reads of a value an invalidation removed
	// resurrected are the fresh reads, between a failover and the replay
	// of recent invalidations, of a value an invalidation the failover
	// lost had removed.
	resurrected []string
	timeline    string   // the calls around the first violation, for diagnosis
	slow        []string // calls over their bound
	untyped     []string // calls that failed with an untyped error
	lostSets    int      // final values older than an acknowledged Set
	lostToMiss  int      // keys read as missing although an acknowledged Set was never invalidated
	lostDetail  []string
}

// invSpan is one applied invalidation of a key: it began at start and
// took effect everywhere by effective.
type invSpan struct {
	start, effective time.Time
	rec              *faultRec
}

// faultChecker checks a scenario's log.
//
// The rule: a read R of key k that returned the value written by W is
// wrong when some invalidation I covering k (Delete k, InvalidateTags of
// k's tag, Clear) was applied, started after W had certainly taken effect,
// and took effect before R started (plus faultGrace when I came from
// another instance: invalidations reach other instances asynchronously).
//
//   - I took effect when it returned nil, or, when it returned ErrQueued,
//     when its instance's recovery queue was next seen empty. An
//     invalidation that failed otherwise promised nothing.
//   - W (a Set) had certainly taken effect when it returned nil. A queued
//     Set is not applied yet: for invalidations from other instances it
//     takes effect when its queue next drains; for later invalidations
//     from its own instance it counts from its return, because an instance
//     must keep the order of its own operations on a key (newest wins).
//     A Set that failed otherwise may still land: it never counts.
//   - A loaded value (a loader call by Fetch) had taken effect when the
//     first Fetch that returned it did, unless that was during the fault:
//     its write may then have failed, or landed late.
//
// Only certain orders count ("started after ... had taken effect"), so
// operations that overlap in time never produce a violation: the checker
// reports what no interleaving can explain.
type faultChecker struct {
	recs       []faultRec
	mon        *faultMonitor
	ninst      int
	writes     map[int64]*faultRec    // seq -> Set or load
	fetchEnd   map[int64]time.Time    // loaded seq -> first Fetch that returned it
	inv        map[string][][]invSpan // key -> per instance, by start
	minEff     map[string][][]int     // suffix minimum of effective, index into inv
	faultStart time.Time
	faultEnd   time.Time
}

func newFaultChecker(recs []faultRec, mon *faultMonitor, ninst int, faultStart, faultEnd time.Time) *faultChecker {
	fc := &faultChecker{recs: recs, mon: mon, ninst: ninst, writes: map[int64]*faultRec{},
		fetchEnd: map[int64]time.Time{}, inv: map[string][][]invSpan{}, minEff: map[string][][]int{},
		faultStart: faultStart, faultEnd: faultEnd}
	for i := range faultKeys {
		fc.inv[faultKey(i)] = make([][]invSpan, ninst)
	}
	for i := range fc.recs {
		r := &fc.recs[i]
		switch {
		case r.op == fSet || r.op == fLoad:
			fc.writes[r.seq] = r
		case r.op == fFetch && r.err == nil:
			if e, ok := fc.fetchEnd[r.seq]; !ok || r.end.Before(e) {
				fc.fetchEnd[r.seq] = r.end
			}
		case r.op.removes():
			fc.addInvalidation(r)
		}
	}
	for k, per := range fc.inv {
		fc.minEff[k] = make([][]int, ninst)
		for inst, spans := range per {
			sort.Slice(spans, func(a, b int) bool { return spans[a].start.Before(spans[b].start) })
			idx := make([]int, len(spans))
			for j := len(spans) - 1; j >= 0; j-- {
				idx[j] = j
				if j+1 < len(spans) && spans[idx[j+1]].effective.Before(spans[j].effective) {
					idx[j] = idx[j+1]
				}
			}
			fc.minEff[k][inst] = idx
		}
	}
	return fc
}

func (fc *faultChecker) addInvalidation(r *faultRec) {
	var eff time.Time
	switch {
	case r.err == nil:
		eff = r.end
	case errors.Is(r.err, ErrQueued):
		eff = fc.mon.drainedAfter(r.inst, r.end)
	default:
		return
	}
	for i := range faultKeys {
		k := faultKey(i)
		if r.op == fClear || (r.op == fDelete && r.key == k) || (r.op == fTags && r.key == faultTag(i)) {
			fc.inv[k][r.inst] = append(fc.inv[k][r.inst], invSpan{start: r.start, effective: eff, rec: r})
		}
	}
}

func (fc *faultChecker) inFault(t time.Time) bool {
	return !t.Before(fc.faultStart) && !t.After(fc.faultEnd)
}

// effectiveFor is when write w had certainly taken effect, as seen by an
// operation of instance inst.
func (fc *faultChecker) effectiveFor(w *faultRec, inst int) time.Time {
	switch {
	case w.op == fLoad:
		end, ok := fc.fetchEnd[w.seq]
		if !ok || fc.inFault(end) {
			return never
		}
		return end
	case w.err == nil:
		return w.end
	case errors.Is(w.err, ErrQueued):
		if inst == w.inst {
			return w.end
		}
		return fc.mon.drainedAfter(w.inst, w.end)
	}
	return never
}

// removedBy returns an invalidation that removed w's value before time at,
// as seen by a read on instance reader, or nil.
func (fc *faultChecker) removedBy(w *faultRec, key string, reader int, at time.Time) *invSpan {
	for inst := range fc.ninst {
		after := fc.effectiveFor(w, inst)
		spans := fc.inv[key][inst]
		j := sort.Search(len(spans), func(j int) bool { return spans[j].start.After(after) })
		if j == len(spans) {
			continue
		}
		s := &spans[fc.minEff[key][inst][j]]
		grace := faultGrace
		if inst == reader {
			grace = 0
		}
		if s.effective.Add(grace).Before(at) {
			return s
		}
	}
	return nil
}

// checkReads applies the rule to every read that started once the
// deployment had recovered, and to every read before that returned a fresh
// value: while L2 is unreachable, fail-safe may serve a value whose
// invalidation could not reach this instance, but says so. With lossy
// (a failover), the fresh reads before recovery are only counted: until
// the instances have replayed their recent invalidations, the new master
// may serve a value whose invalidation the old one acknowledged and lost.
func (fc *faultChecker) checkReads(recovered time.Time, lossy bool, f *faultFindings) {
	for i := range fc.recs {
		r := &fc.recs[i]
		if !r.op.read() || r.err != nil || (r.stale && r.start.Before(recovered)) {
			continue
		}
		msgs := &f.violations
		if lossy && r.start.Before(recovered) {
			msgs = &f.resurrected
		}
		w := fc.writes[r.seq]
		if w == nil || w.key != r.key {
			f.violations = append(f.violations, fmt.Sprintf("instance %d read %s=%d, which no write of that key produced", r.inst, r.key, r.seq))
			continue
		}
		if s := fc.removedBy(w, r.key, r.inst, r.start); s != nil {
			if len(*msgs) == 0 && msgs == &f.violations {
				f.timeline = fc.timeline(r.key, w.start.Add(-100*time.Millisecond), r.end)
			}
			*msgs = append(*msgs, fmt.Sprintf(
				"instance %d %s %s at %s returned %d (stale=%v), written by instance %d's %s (%s..%s, %s), removed by instance %d's %s %q (%s..%s, %s, effective %s)",
				r.inst, r.op, r.key, ts(r.start), r.seq, r.stale, w.inst, w.op, ts(w.start), ts(w.end), errClass(w.err),
				s.rec.inst, s.rec.op, s.rec.key, ts(s.rec.start), ts(s.rec.end), errClass(s.rec.err), ts(s.effective)))
		}
	}
}

// checkFinal compares each key's final value (read once the load stopped
// and every instance agreed) with the acknowledged Sets: an older value
// than an acknowledged Set, or a miss where an acknowledged Set was never
// followed by any invalidation, is a lost write.
func (fc *faultChecker) checkFinal(final map[string]int64, f *faultFindings) {
	for k, got := range final {
		var lastAck *faultRec
		lastRemove := time.Time{}
		for i := range fc.recs {
			r := &fc.recs[i]
			switch {
			case r.op == fSet && r.key == k && r.err == nil:
				if lastAck == nil || r.start.After(lastAck.start) {
					lastAck = r
				}
			case r.op.removes() && covers(r, k) && r.start.After(lastRemove):
				lastRemove = r.start
			}
		}
		if got == 0 {
			if lastAck != nil && lastAck.start.After(lastRemove) {
				f.lostToMiss++
				f.lostDetail = append(f.lostDetail, fmt.Sprintf("%s missing; acknowledged Set %d at %s..%s", k, lastAck.seq, ts(lastAck.start), ts(lastAck.end)))
			}
			continue
		}
		w := fc.writes[got]
		if w == nil {
			continue // reported by checkReads
		}
		for i := range fc.recs {
			s := &fc.recs[i]
			if s.op == fSet && s.key == k && s.err == nil && s.seq != got && s.start.After(fc.effectiveFor(w, s.inst)) {
				f.lostSets++
				f.lostDetail = append(f.lostDetail, fmt.Sprintf("%s=%d (%s %s..%s), but Set %d was acknowledged at %s..%s",
					k, got, w.op, ts(w.start), ts(w.end), s.seq, ts(s.start), ts(s.end)))
				break
			}
		}
	}
}

// timeline lists the logged calls on key (and the invalidations covering
// it) between from and to.
func (fc *faultChecker) timeline(key string, from, to time.Time) string {
	var lines []string
	for i := range fc.recs {
		r := &fc.recs[i]
		if r.end.Before(from) || r.start.After(to) || (r.key != key && !covers(r, key)) {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s..%s instance %d %s %q seq=%d stale=%v %s", ts(r.start), ts(r.end), r.inst, r.op, r.key, r.seq, r.stale, errClass(r.err)))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func covers(r *faultRec, key string) bool {
	switch r.op {
	case fClear:
		return true
	case fDelete:
		return r.key == key
	case fTags:
		var i int
		_, _ = fmt.Sscanf(key, "k%d", &i)
		return r.key == faultTag(i)
	}
	return false
}

// tally counts calls by class, stale reads and durations, and flags calls
// over their bound and untyped errors.
func (fc *faultChecker) tally(o Options, f *faultFindings) {
	f.calls, f.errs, f.maxDur = map[string]int{}, map[string]int{}, map[faultOp]time.Duration{}
	for i := range fc.recs {
		r := &fc.recs[i]
		if r.op == fLoad {
			continue
		}
		cl := errClass(r.err)
		f.calls[r.op.String()+"/"+cl]++
		if cl != "ok" && cl != "not-found" {
			f.errs[cl]++
		}
		if cl == "untyped" {
			f.untyped = append(f.untyped, fmt.Sprintf("instance %d %s %q: %v", r.inst, r.op, r.key, r.err))
		}
		if r.op.read() && r.err == nil && r.stale {
			f.stale++
		}
		d := r.end.Sub(r.start)
		f.maxDur[r.op] = max(f.maxDur[r.op], d)
		if b := faultBound(o, r.op); d > b {
			f.slow = append(f.slow, fmt.Sprintf("instance %d %s %q took %v, bound %v (%s)", r.inst, r.op, r.key, d, b, cl))
		}
	}
	for inst := range fc.ninst {
		f.outage = max(f.outage, writeOutage(fc.recs, inst))
	}
}

// writeOutage is the client-visible write outage of one instance: from the
// start of its first failed write to the end of its first successful write
// that started after its last failed one.
func writeOutage(recs []faultRec, inst int) time.Duration {
	var first, last time.Time
	for _, r := range recs {
		if r.inst == inst && r.op.write() && r.err != nil {
			if first.IsZero() || r.start.Before(first) {
				first = r.start
			}
			if r.start.After(last) {
				last = r.start
			}
		}
	}
	if first.IsZero() {
		return 0
	}
	ok := never
	for _, r := range recs {
		if r.inst == inst && r.op.write() && r.err == nil && r.start.After(last) && r.end.Before(ok) {
			ok = r.end
		}
	}
	return ok.Sub(first)
}

// ts formats a time of the run for messages.
func ts(t time.Time) string {
	if t.Equal(never) {
		return "never"
	}
	return t.Format("15:04:05.000000")
}

// firstFew returns at most n of msgs, joined, with a count of the rest.
func firstFew(msgs []string, n int) string {
	if len(msgs) <= n {
		return strings.Join(msgs, "\n")
	}
	return strings.Join(msgs[:n], "\n") + fmt.Sprintf("\n... and %d more", len(msgs)-n)
}

// TestFault_Checker feeds the checker made-up logs, so that a clean
// scenario means something: each case either breaks the rule or must not
// be flagged.
func TestFault_Checker(t *testing.T) {
	base := time.Now()
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	queued := fmt.Errorf("%w: test", ErrQueued)
	set := func(inst, seq int, key string, from, to int, err error) faultRec {
		return faultRec{op: fSet, inst: inst, key: key, seq: int64(seq), start: at(from), end: at(to), err: err}
	}
	inv := func(op faultOp, inst int, key string, from, to int, err error) faultRec {
		return faultRec{op: op, inst: inst, key: key, start: at(from), end: at(to), err: err}
	}
	read := func(inst, seq int, key string, from int, stale bool) faultRec {
		return faultRec{op: fGet, inst: inst, key: key, seq: int64(seq), stale: stale, start: at(from), end: at(from + 1)}
	}
	for _, tc := range []struct {
		name string
		recs []faultRec
		want int // violations
	}{
		{"read after own delete", []faultRec{set(0, 1, "k00", 0, 10, nil), inv(fDelete, 0, "k00", 20, 30, nil), read(0, 1, "k00", 40, false)}, 1},
		{"read elsewhere within grace", []faultRec{set(0, 1, "k00", 0, 10, nil), inv(fDelete, 0, "k00", 20, 30, nil), read(1, 1, "k00", 300, false)}, 0},
		{"read elsewhere after grace", []faultRec{set(0, 1, "k00", 0, 10, nil), inv(fDelete, 0, "k00", 20, 30, nil), read(1, 1, "k00", 600, false)}, 1},
		{"delete overlapping the set", []faultRec{set(0, 1, "k00", 0, 30, nil), inv(fDelete, 1, "k00", 20, 40, nil), read(0, 1, "k00", 900, false)}, 0},
		{"tag of the key", []faultRec{set(0, 1, "k04", 0, 10, nil), inv(fTags, 0, "g0", 20, 30, nil), read(0, 1, "k04", 40, false)}, 1},
		{"tag of another key", []faultRec{set(0, 1, "k05", 0, 10, nil), inv(fTags, 0, "g0", 20, 30, nil), read(0, 1, "k05", 40, false)}, 0},
		{"clear", []faultRec{set(0, 1, "k05", 0, 10, nil), inv(fClear, 1, "", 20, 30, nil), read(0, 1, "k05", 900, false)}, 1},
		{"failed delete", []faultRec{set(0, 1, "k00", 0, 10, nil), inv(fDelete, 0, "k00", 20, 30, ErrQueueFull), read(0, 1, "k00", 40, false)}, 0},
		{"queued delete before the queue drained", []faultRec{set(0, 1, "k00", 0, 10, nil), inv(fDelete, 0, "k00", 120, 130, queued), read(0, 1, "k00", 150, false)}, 0},
		{"queued delete after the queue drained", []faultRec{set(0, 1, "k00", 0, 10, nil), inv(fDelete, 0, "k00", 120, 130, queued), read(0, 1, "k00", 250, false)}, 1},
		{"queued set, later delete elsewhere", []faultRec{set(0, 1, "k00", 100, 110, queued), inv(fDelete, 1, "k00", 120, 130, nil), read(1, 1, "k00", 900, false)}, 0},
		{"queued set, later delete here", []faultRec{set(0, 1, "k00", 100, 110, queued), inv(fDelete, 0, "k00", 120, 130, nil), read(1, 1, "k00", 900, false)}, 1},
		{"failed set", []faultRec{set(0, 1, "k00", 0, 10, ErrQueueFull), inv(fDelete, 0, "k00", 20, 30, nil), read(0, 1, "k00", 900, false)}, 0},
		{"stale during the fault", []faultRec{set(0, 1, "k00", 0, 10, nil), inv(fDelete, 0, "k00", 20, 30, nil), read(2, 1, "k00", 900, true)}, 0},
		{"stale after recovery", []faultRec{set(0, 1, "k00", 0, 10, nil), inv(fDelete, 0, "k00", 20, 30, nil), read(2, 1, "k00", 1500, true)}, 1},
		{"value of another key", []faultRec{set(0, 1, "k00", 0, 10, nil), read(0, 1, "k01", 40, false)}, 1},
		{"loaded value", []faultRec{
			{op: fLoad, key: "k00", seq: 1, start: at(0), end: at(0)},
			{op: fFetch, key: "k00", seq: 1, start: at(0), end: at(10)},
			inv(fDelete, 0, "k00", 20, 30, nil), read(0, 1, "k00", 40, false)}, 1},
		{"value loaded during the fault", []faultRec{
			{op: fLoad, key: "k00", seq: 1, start: at(2000), end: at(2000)},
			{op: fFetch, key: "k00", seq: 1, start: at(2000), end: at(2010)},
			inv(fDelete, 0, "k00", 2020, 2030, nil), read(0, 1, "k00", 2040, false)}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Instance 0's queue holds something from 100 ms to 200 ms;
			// the fault lasts from 1 s to 3 s.
			mon := &faultMonitor{at: make([][]time.Time, 3), qlen: make([][]int, 3)}
			for ms := 0; ms <= 4000; ms += 50 {
				for i := range 3 {
					n := 0
					if i == 0 && ms >= 100 && ms < 200 {
						n = 1
					}
					mon.at[i], mon.qlen[i] = append(mon.at[i], at(ms)), append(mon.qlen[i], n)
				}
			}
			fc := newFaultChecker(tc.recs, mon, 3, at(1000), at(3000))
			var f faultFindings
			fc.checkReads(at(1000), false, &f)
			if len(f.violations) != tc.want {
				t.Fatalf("%d violations, want %d: %v", len(f.violations), tc.want, f.violations)
			}
		})
	}
	t.Run("final", func(t *testing.T) {
		for _, tc := range []struct {
			name        string
			recs        []faultRec
			final       int64
			lost, toMis int
		}{
			{"newest", []faultRec{set(0, 1, "k00", 0, 10, nil), set(1, 2, "k00", 20, 30, nil)}, 2, 0, 0},
			{"older value back", []faultRec{set(0, 1, "k00", 0, 10, nil), set(1, 2, "k00", 20, 30, nil)}, 1, 1, 0},
			{"overlapping sets", []faultRec{set(0, 1, "k00", 0, 30, nil), set(1, 2, "k00", 20, 40, nil)}, 1, 0, 0},
			{"missing", []faultRec{set(0, 1, "k00", 0, 10, nil)}, 0, 0, 1},
			{"deleted", []faultRec{set(0, 1, "k00", 0, 10, nil), inv(fDelete, 0, "k00", 20, 30, ErrQueueFull)}, 0, 0, 0},
		} {
			fc := newFaultChecker(tc.recs, &faultMonitor{at: make([][]time.Time, 2), qlen: make([][]int, 2)}, 2, at(1000), at(3000))
			var f faultFindings
			fc.checkFinal(map[string]int64{"k00": tc.final}, &f)
			if f.lostSets != tc.lost || f.lostToMiss != tc.toMis {
				t.Errorf("%s: lost %d, to miss %d; want %d, %d", tc.name, f.lostSets, f.lostToMiss, tc.lost, tc.toMis)
			}
		}
	})
}
