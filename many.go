package tiercache

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/tiercache/tiercache/internal/l1"
)

// entriesFrom returns the fresh entries for keys, looking in l1c first
// (nil: L2 alone, SkipL1) and then reading every L1 miss from L2 in one
// MGet (one round trip per node). Missing keys are absent from the map;
// negative entries are present. It counts no request: its callers count
// each key once its answer is known. A corrupt value is counted, unless
// reread says the keys were read once already in this call. L1 answers
// are listed in fromL1 when it is not nil; expired entries still within
// the fail-safe window are listed in stale when it is not nil.
func (c *Cache) entriesFrom(ctx context.Context, keys []string, fromL1 map[string]bool, stale map[string]*l1.Entry, l1c *l1.Cache, reread bool) (map[string]*l1.Entry, error) {
	out := make(map[string]*l1.Entry, len(keys))
	now := c.now()
	rb := c.readBudget(ctx) // L2 calls run under the call's read budget
	defer rb.release()
	var (
		miss []string
		toks []l1.Token
	)
	for _, k := range keys {
		if _, dup := out[k]; dup {
			continue
		}
		if c.queued(k) {
			continue // its queued operation is not applied yet: a miss
		}
		if l1c != nil {
			e, src, err := c.fromL1(&rb, l1c, k)
			if err != nil {
				return out, err
			}
			if src != SourceNone {
				out[k] = e
				if fromL1 != nil {
					fromL1[k] = true
				}
				continue
			}
			toks = append(toks, l1c.Snapshot(k))
		}
		miss = append(miss, k)
	}
	if len(miss) == 0 {
		return out, nil
	}
	full := make([]string, len(miss))
	for i, k := range miss {
		full[i] = c.prefix + k
	}
	vals, err := c.store.MGet(rb.get(), full)
	if err != nil {
		c.counter.errors.Add(1)
		return out, err
	}
	for i, k := range miss {
		if vals[i] == nil {
			continue
		}
		e, expired, err := c.decodeEntryOf(k, vals[i], now, !reread)
		if err != nil {
			continue // a miss; corrupt values are counted and logged
		}
		if expired {
			if stale != nil && c.opts.FailSafe.MaxDuration > 0 && !e.Negative {
				if vd, err := c.validity(rb.get(), e); err == nil && vd != validNo {
					stale[k] = e
				}
			}
			continue
		}
		if vd, err := c.validity(rb.get(), e); err != nil {
			return out, err
		} else if vd != validYes {
			if vd == validSoft && stale != nil && c.opts.FailSafe.MaxDuration > 0 && !e.Negative {
				stale[k] = e // invalidated softly: a fail-safe candidate
			}
			continue
		}
		if l1c != nil {
			l1c.SetIfUnchanged(k, e, toks[i], now)
		}
		out[k] = e
	}
	return out, nil
}

// accessed reports reads to Options.OnAccess.
func (c *Cache) accessed(keys []string) {
	if c.opts.OnAccess != nil {
		for _, k := range keys {
			c.opts.OnAccess(k)
		}
	}
}

func (c *Cache) checkKeys(op string, keys []string) error {
	for _, k := range keys {
		if err := c.check(op, k); err != nil {
			return err
		}
	}
	return nil
}

// GetMany reads keys into dst, a non-nil map[string]T or a pointer to one
// (a nil map behind the pointer is allocated). Found keys are added to the
// map; missing ones are left out. L1 misses are read from L2 in one round
// trip per node. When L2 fails, a key L1 holds a fail-safe copy of
// (Options.FailSafe) is answered from it, as Get does, and GetMany returns
// what it has with an error naming how many keys could not be read.
// LookupMany reports how each key's read went.
func (c *Cache) GetMany(ctx context.Context, keys []string, dst any) error {
	res, err := c.LookupMany(ctx, keys, dst)
	if err != nil {
		return err
	}
	var failed int
	var firstErr error
	for _, r := range res {
		if r.Err != nil && !errors.Is(r.Err, ErrNotFound) {
			failed++
			if firstErr == nil {
				firstErr = r.Err
			}
		}
	}
	if failed > 0 {
		return errorf("tiercache: get many (%d of %d keys failed): %w", failed, len(res), firstErr)
	}
	return nil
}

// mapDest resolves GetMany's destination to a settable map value.
func mapDest(dst any) (reflect.Value, error) {
	v := reflect.ValueOf(dst)
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Map {
		if v.Elem().IsNil() {
			v.Elem().Set(reflect.MakeMap(v.Elem().Type()))
		}
		v = v.Elem()
	}
	if v.Kind() != reflect.Map || v.IsNil() || v.Type().Key().Kind() != reflect.String {
		return reflect.Value{}, fmt.Errorf("%w: GetMany needs a map[string]T or *map[string]T, got %T", ErrInvalidDestination, dst)
	}
	return v, nil
}

// SetMany writes every item in one round trip per node. opts apply to all
// items. Validation happens first: on a bad key or value nothing is written.
func (c *Cache) SetMany(ctx context.Context, items map[string]any, opts ...SetOption) error {
	if err := checkFillOptions(opts); err != nil {
		return errorf("tiercache: set many: %w", err)
	}
	so := applySet(opts)
	if err := c.checkSkipL2(&so); err != nil {
		return errorf("tiercache: set many: %w", err)
	}
	list := make([]Item, 0, len(items))
	for k, v := range items {
		list = append(list, Item{Key: k, Value: v, TTL: so.ttl, Tags: so.tags})
	}
	return c.setItems(ctx, list, setOptions{skipL1: so.skipL1, skipL2: so.skipL2, l1TTL: so.l1TTL})
}

// FetchMany returns the values of keys, loading every key that misses
// both tiers with one call of load, which receives only those keys. Keys
// the loader does not return are cached as not found (Options.NegativeTTL)
// and left out of the result, as are keys already cached as not found.
//
// FetchMany protects the loader as Fetch does, key by key: a key that a
// concurrent Fetch or FetchMany in this process is already loading is
// waited for, not loaded again; with Options.Lock, keys another instance
// is loading are waited for too (woken when it writes them). With
// Options.FailSafe, a key whose load fails or takes longer than
// LoaderSoftTimeout, or that L2 cannot serve, is answered with its last
// value while it is within the fail-safe window. LoaderHardTimeout bounds
// the loader call, and Options.EagerRefreshThreshold refreshes hits in the
// background, in one loader call per FetchMany.
//
// When some keys could neither be loaded nor served stale, FetchMany
// returns what it has with an error naming how many failed.
func FetchMany[T any](ctx context.Context, c *Cache, keys []string, load BatchLoaderFunc[T], opts ...SetOption) (map[string]T, error) {
	return fetchMany(ctx, c, keys, load, opts, nil)
}

// FetchManyResult is FetchMany that also reports, for each key in the
// returned map, where its value came from and whether it is stale (a
// fail-safe answer), as FetchResult does for one key.
func FetchManyResult[T any](ctx context.Context, c *Cache, keys []string, load BatchLoaderFunc[T], opts ...SetOption) (map[string]T, map[string]Result, error) {
	results := make(map[string]Result, len(keys))
	out, err := fetchMany(ctx, c, keys, load, opts, results)
	return out, results, err
}

// fetchMany is FetchMany; results, when not nil, receives each answered
// key's Result.
func fetchMany[T any](ctx context.Context, c *Cache, keys []string, load BatchLoaderFunc[T], opts []SetOption, results map[string]Result) (map[string]T, error) {
	if err := c.checkKeys("fetch", keys); err != nil {
		return nil, err
	}
	if load == nil {
		return nil, errorf("tiercache: fetch many: %w", ErrNilLoader)
	}
	if err := checkFillOptions(opts); err != nil {
		return nil, errorf("tiercache: fetch many: %w", err)
	}
	if len(opts) > 0 && applySet(opts).skipL2 {
		return nil, errorf("tiercache: fetch many: %w: SkipL2 applies to Set, SetMany and Fetch", ErrInvalidOptions)
	}
	c.accessed(keys)
	out := make(map[string]T, len(keys))
	l1c := c.l1For(opts)
	fromL1 := make(map[string]bool)
	// Each distinct key counts once, when its answer is known: a key
	// that L2 failed to read may still be answered stale or loaded.
	es, err := c.entriesFrom(ctx, keys, fromL1, nil, l1c, false)
	if err != nil {
		// L2 trouble: the flights below serve stale values or load.
		c.logger.Debug("tiercache: L2 read failed, loading", "keys", len(keys), "err", err)
	}
	var (
		missing []string
		hits    map[string]*l1.Entry
	)
	seen := make(map[string]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		e, ok := es[k]
		if !ok {
			missing = append(missing, k)
			continue
		}
		src := SourceL2
		if fromL1[k] {
			src = SourceL1
		}
		if e.Negative {
			// As for Fetch: a cached "not found" from L1 is an L1 hit,
			// one from L2 a miss.
			r := ResultMiss
			if src == SourceL1 {
				r = ResultHitL1
			}
			c.obs.reqs.add(OpFetchMany, r, 1)
			continue
		}
		var v T
		if err := c.assign(e, &v); err != nil {
			missing = append(missing, k) // undecodable as T: reload
			continue
		}
		c.keepDecoded(k, e, v)
		out[k] = v
		res := c.result(e, src)
		c.obs.reqs.add(OpFetchMany, resultOf(res.Source, nil), 1)
		if results != nil {
			results[k] = res
		}
		if !e.Stale {
			if hits == nil {
				hits = make(map[string]*l1.Entry)
			}
			hits[k] = e
		}
	}
	maybeRefreshMany(c, hits, load, opts)
	if len(missing) == 0 {
		return out, nil
	}
	// One flight per key, shared with Fetch: lead the keys no one is
	// loading, in one batch, and wait for the others.
	fl := make([]*flight, len(missing))
	fks := make([]string, len(missing))
	var led []int
	for i, k := range missing {
		fks[i] = c.flightKey(k)
		if l1c == nil {
			fks[i] += flightSkipL1
		}
		var leader bool
		if fl[i], leader = c.flights.join(fks[i]); leader {
			led = append(led, i)
		}
	}
	if len(led) > 0 {
		lk := make([]string, len(led))
		lf := make(map[string]*flight, len(led))
		for j, i := range led {
			lk[j] = missing[i]
			lf[missing[i]] = fl[i]
		}
		go func() {
			var once sync.Map
			resolve := func(k string, val any, err error) {
				if _, dup := once.LoadOrStore(k, true); !dup {
					c.flights.finish(fks[slices.Index(missing, k)], lf[k], val, err)
				}
			}
			defer func() {
				err := errors.New("tiercache: fetch many: the load ended without an answer")
				if r := recover(); r != nil {
					err = errorf("tiercache: panic in a load: %v\n%s", r, debug.Stack())
				}
				for _, k := range lk {
					resolve(k, nil, err)
				}
			}()
			lctx, release := c.loaderContext(ctx)
			defer release()
			fetchManyLocked(lctx, c, lk, load, opts, resolve)
		}()
	}
	var failed int
	var firstErr error
	for i, k := range missing {
		v, res, err := awaitFlight[T](ctx, c, k, fl[i])
		c.obs.reqs.add(OpFetchMany, resultOf(res.Source, err), 1)
		switch {
		case err == nil:
			out[k] = v
			if results != nil {
				results[k] = res
			}
		case errors.Is(err, ErrNotFound):
		default:
			failed++
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	if failed > 0 {
		return out, errorf("tiercache: fetch many (%d of %d keys failed): %w", failed, len(missing), firstErr)
	}
	return out, nil
}

// fetchManyLocked loads the keys whose flights this FetchMany leads, and
// resolves each flight as soon as its answer is known: from a tier filled
// meanwhile, from another instance holding the fleet lock, from the
// loader, or from a fail-safe stale value.
func fetchManyLocked[T any](ctx context.Context, c *Cache, keys []string, load BatchLoaderFunc[T], opts []SetOption, resolve func(k string, val any, err error)) {
	fromL1 := make(map[string]bool)
	stale := make(map[string]*l1.Entry)
	l1c := c.l1For(opts)
	es, err := c.entriesFrom(ctx, keys, fromL1, stale, l1c, true)
	l2ok := err == nil
	var missing []string
	now := c.now()
	for _, k := range keys {
		if e, ok := es[k]; ok {
			if e.Negative {
				resolve(k, nil, ErrNotFound)
				continue
			}
			var v T
			if c.assign(e, &v) == nil {
				c.keepDecoded(k, e, v)
				src := SourceL2
				if fromL1[k] {
					src = SourceL1
				}
				resolve(k, fetched[T]{v, c.result(e, src)}, nil)
				continue
			}
		}
		if !l2ok {
			if s := c.staleIn(l1c, k); s != nil {
				if s.Stale && s.ExpiresAt > now {
					// Within its fail-safe throttle window: it answers
					// without a loader call (as Fetch does).
					var sv T
					if c.assign(s, &sv) == nil {
						resolve(k, fetched[T]{sv, Result{Source: SourceStale, Stale: true}}, nil)
						continue
					}
				}
				stale[k] = s
			}
		}
		missing = append(missing, k)
	}
	if len(missing) == 0 {
		return
	}
	if !l2ok || !c.opts.Lock.Enabled {
		loadManyWithTimeouts(ctx, c, missing, load, opts, stale, resolve)
		return
	}
	// The fleet lock, key by key and all at once. The keys this instance
	// locks are loaded at once, while the keys other instances hold are
	// waited for: waiting before loading would leave two instances that
	// each hold some of the keys waiting for each other.
	elsewhere := make([]bool, len(missing))
	var wg sync.WaitGroup
	for i, k := range missing {
		wg.Go(func() { elsewhere[i] = c.lockedElsewhere(ctx, k) })
	}
	wg.Wait()
	var own, late []string
	var mu sync.Mutex
	for i, k := range missing {
		if !elsewhere[i] {
			own = append(own, k)
			continue
		}
		wg.Go(func() {
			if got, ok := waitHolder[T](ctx, c, k); ok {
				resolve(k, got, nil)
				return
			}
			mu.Lock()
			late = append(late, k)
			mu.Unlock()
		})
	}
	if len(own) > 0 {
		loadManyWithTimeouts(ctx, c, own, load, opts, stale, resolve)
	}
	wg.Wait()
	if len(late) > 0 {
		// The holders did not write in time: load those too.
		loadManyWithTimeouts(ctx, c, late, load, opts, stale, resolve)
	}
}

// loadManyWithTimeouts calls the batch loader under the hard timeout and,
// when some keys have a stale value, the soft timeout: on it, those keys
// are answered stale at once, and the others wait for the loader, whose
// result is cached for every key when it comes.
func loadManyWithTimeouts[T any](ctx context.Context, c *Cache, keys []string, load BatchLoaderFunc[T], opts []SetOption, stale map[string]*l1.Entry, resolve func(k string, val any, err error)) {
	ctx = withAdapt(ctx)
	lctx, cancel := ctx, context.CancelFunc(func() {})
	if c.opts.LoaderHardTimeout > 0 {
		lctx, cancel = context.WithTimeout(ctx, c.opts.LoaderHardTimeout)
	}
	defer cancel()
	type res struct {
		m   map[string]T
		err error
	}
	done := make(chan res, 1)
	go func() {
		m, err := callBatchLoader(lctx, c, keys, load)
		if err != nil && lctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("%w after %v: %w", ErrLoaderTimeout, c.opts.LoaderHardTimeout, err)
		}
		done <- res{m, err}
	}()
	var r res
	if c.opts.LoaderSoftTimeout > 0 && len(stale) > 0 {
		soft := time.NewTimer(c.opts.LoaderSoftTimeout)
		select {
		case r = <-done:
		case <-soft.C:
			for k, s := range stale {
				val, err := fetchedStale[T](c, k, s)
				resolve(k, val, err)
			}
			r = <-done
		}
		soft.Stop()
	} else {
		r = <-done
	}
	if r.err != nil {
		for _, k := range keys {
			if s, ok := stale[k]; ok {
				val, err := fetchedStale[T](c, k, s)
				resolve(k, val, err)
				continue
			}
			resolve(k, nil, r.err)
		}
		return
	}
	written := cacheLoadedMany(ctx, c, keys, r.m, adaptedOpts(ctx, opts))
	for _, k := range keys {
		v, ok := r.m[k]
		if !ok {
			resolve(k, nil, ErrNotFound)
			continue
		}
		resolve(k, fetched[T]{v, written[k]}, nil)
	}
}

// cacheLoadedMany writes what a batch loader returned to both tiers, and
// a "not found" for each key it did not return, and describes each value
// written.
func cacheLoadedMany[T any](ctx context.Context, c *Cache, keys []string, loaded map[string]T, opts []SetOption) map[string]Result {
	ctx, cancel := c.fillContext(ctx)
	defer cancel()
	res := make(map[string]Result, len(loaded))
	for k := range loaded {
		res[k] = Result{Source: SourceLoader}
	}
	so := applySet(opts)
	vs, err := c.stampFor(ctx, so.tags)
	if err != nil {
		c.logger.Warn("tiercache: loaded values not cached", "keys", len(keys), "err", err)
		return res
	}
	encs := make([]encoded, 0, len(keys))
	for _, k := range keys {
		v, ok := loaded[k]
		var enc encoded
		if ok {
			enc, err = c.encode(k, v, so, false, vs)
			if err == nil {
				res[k] = c.result(enc.entry, SourceLoader)
			}
		} else if c.opts.NegativeTTL >= 0 {
			enc, err = c.encode(k, nil, setOptions{}, true, stamp{ns: vs.ns})
		} else {
			continue
		}
		if err != nil {
			c.logger.Warn("tiercache: a loaded value cannot be cached", "key", truncKey(k), "err", err)
			continue
		}
		encs = append(encs, enc)
	}
	if len(encs) == 0 {
		return res
	}
	if err := c.write(ctx, encs, false); err != nil {
		c.logger.Warn("tiercache: caching loaded values failed", "keys", len(encs), "err", err)
		if unavailable(err) && c.l1 != nil && c.opts.FailSafe.MaxDuration > 0 && c.opts.FailSafe.Throttle > 0 {
			for k, v := range loaded {
				c.keepUnconfirmed(k, res[k], v, so)
			}
		}
	}
	return res
}

// maybeRefreshMany starts one background batch refresh of the hits past
// Options.EagerRefreshThreshold of their TTL that no refresh covers yet.
func maybeRefreshMany[T any](c *Cache, hits map[string]*l1.Entry, load BatchLoaderFunc[T], opts []SetOption) {
	thr := c.opts.EagerRefreshThreshold
	if thr <= 0 || len(hits) == 0 {
		return
	}
	now := c.now()
	var due []string
	for k, e := range hits {
		if e.ExpiresAt == 0 || e.CreatedAt == 0 || now < e.CreatedAt+int64(thr*float64(e.ExpiresAt-e.CreatedAt)) {
			continue
		}
		if _, running := c.eager.LoadOrStore(k, struct{}{}); !running {
			due = append(due, k)
		}
	}
	if len(due) == 0 {
		return
	}
	c.counter.eagerRefreshes.Add(uint64(len(due)))
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer func() {
			for _, k := range due {
				c.eager.Delete(k)
			}
		}()
		ctx, cancel := c.refreshContext()
		defer cancel()
		m, err := callBatchLoader(ctx, c, due, load)
		if err != nil {
			c.logger.Debug("tiercache: eager refresh failed; the current values stay", "keys", len(due), "err", err)
			return
		}
		cacheLoadedMany(c.ctx, c, due, m, adaptedOpts(ctx, opts))
	}()
}

func callBatchLoader[T any](ctx context.Context, c *Cache, keys []string, load BatchLoaderFunc[T]) (m map[string]T, err error) {
	c.counter.loads.Add(1)
	ctx, call := c.obs.loadBegin(ctx, len(keys))
	defer c.loaderDone(&err, call)
	return load(ctx, keys)
}
