package tiercache

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tiercache/tiercache/internal/l1"
)

// LoaderFunc loads the value of one key on a miss. Return ErrNotFound (or
// an error wrapping it) when the value does not exist, to have the absence
// cached for Options.NegativeTTL.
type LoaderFunc[T any] func(ctx context.Context, key string) (T, error)

// BatchLoaderFunc loads many keys at once. It receives only the keys that
// missed both tiers and returns the values it found; keys absent from the
// map are treated as not found.
type BatchLoaderFunc[T any] func(ctx context.Context, keys []string) (map[string]T, error)

// LoaderPanicError is returned when a loader panics. The panic does not
// escape into the caller or other waiters.
type LoaderPanicError struct {
	Value any    // what the loader panicked with
	Stack []byte // the loader's stack at the panic
}

// Error implements error.
func (e *LoaderPanicError) Error() string {
	return fmt.Sprintf("tiercache: loader panicked: %v", e.Value)
}

// Fetch returns the value of key, calling load on a miss and caching what
// it returns (cache-aside). Concurrent Fetches of the same key in this
// process share one loader call (and, with Options.Lock, one across the
// fleet). opts apply to the write of a loaded value.
//
// The loader runs on a context that keeps ctx's values but not its
// cancellation, so one caller giving up does not fail the others waiting
// for the same key; each caller still returns when its own ctx ends.
//
// With Options.FailSafe, a loader error or timeout, or an unreachable L2,
// is answered with the last value when one is still within the fail-safe
// window; FetchResult reports it as stale.
func Fetch[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T], opts ...SetOption) (T, error) {
	if c.l1For(opts) != nil && load != nil && !c.closed.Load() && c.opts.OnAccess == nil {
		// The L1 hit path, kept free of Result bookkeeping. A fresh
		// entry exists only under a valid key.
		t0 := c.obs.start()
		if e, st := c.l1.Lookup(key); st == l1.Fresh && !e.Negative {
			if v, ok := e.Value().(T); ok {
				if valid, known := c.vers.quick(e); valid && known {
					c.obs.hitL1(OpFetch, t0)
					maybeRefresh(c, key, e, load, opts)
					return v, nil
				}
			}
		}
	}
	v, _, err := FetchResult(ctx, c, key, load, opts...)
	return v, err
}

// FetchResult is Fetch that also reports where the value came from and
// whether it is stale.
func FetchResult[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T], opts ...SetOption) (T, Result, error) {
	t0 := c.obs.start()
	v, res, err := fetchResult(ctx, c, key, load, opts)
	c.obs.done(OpFetch, res.Source, err, t0)
	return v, res, err
}

func fetchResult[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T], opts []SetOption) (T, Result, error) {
	var zero T
	if err := c.check("fetch", key); err != nil {
		return zero, Result{}, err
	}
	if load == nil {
		return zero, Result{}, keyErr("fetch", key, ErrNilLoader)
	}
	if err := checkFillOptions(opts); err != nil {
		return zero, Result{}, keyErr("fetch", key, err)
	}
	var skipL2 bool
	if len(opts) > 0 {
		so := applySet(opts)
		if err := c.checkSkipL2(&so); err != nil {
			return zero, Result{}, keyErr("fetch", key, err)
		}
		skipL2 = so.skipL2
	}
	if c.opts.OnAccess != nil {
		c.opts.OnAccess(key)
	}
	skipL1 := len(opts) > 0 && applySet(opts).skipL1
	if c.l1 != nil && !skipL1 {
		rb := c.readBudget(ctx)
		e, src, err := c.fromL1(&rb, c.l1, key)
		rb.release()
		if err == nil && src != SourceNone {
			if e.Negative {
				return zero, Result{Source: src}, keyErr("fetch", key, ErrNotFound)
			}
			if v, ok := e.Value().(T); ok {
				if src == SourceL1 {
					maybeRefresh(c, key, e, load, opts)
				}
				return v, c.result(e, src), nil
			}
		}
	}
	fk := c.flightKey(key)
	if skipL1 {
		fk += flightSkipL1 // its flight reads no L1: another one's answer may come from L1
	}
	if skipL2 {
		fk += flightSkipL2 // its flight keeps its value local
	}
	f, leader := c.flights.join(fk)
	if leader {
		c.flights.run(fk, f, func() (any, error) {
			lctx, release := c.loaderContext(ctx)
			defer release()
			return fetchLocked(lctx, c, key, load, opts)
		})
	}
	return awaitFlight[T](ctx, c, key, f)
}

// awaitFlight waits for key's flight, or for ctx. A flight led by a call
// for another type (Fetch[int] and FetchMany[string] of the same key)
// leaves the value in the cache: it is read from there.
func awaitFlight[T any](ctx context.Context, c *Cache, key string, f *flight) (T, Result, error) {
	var zero T
	select {
	case <-ctx.Done():
		return zero, Result{}, keyErr("fetch", key, ctx.Err())
	case <-f.done:
	}
	if f.err != nil {
		return zero, Result{}, keyErr("fetch", key, f.err)
	}
	if r, ok := f.val.(fetched[T]); ok {
		return r.v, r.res, nil
	}
	e, src, _, err := c.entry(ctx, key)
	if err == nil && e.Negative {
		err = ErrNotFound
	}
	if err == nil {
		var v T
		if err = c.assign(e, &v); err == nil {
			return v, c.result(e, src), nil
		}
	}
	return zero, Result{}, keyErr("fetch", key, err)
}

// flightKey names key's flight. A read that starts after an invalidation
// this instance knows of must not join a flight that started before it and
// may return what the invalidation removed: tag and namespace
// invalidations (and link resets) move every key to a new flight through
// the versions' generation, and an invalidation of one key forgets that
// key's flight (forgetFlight).
func (c *Cache) flightKey(key string) string {
	var b [20]byte
	return key + "\x00" + string(strconv.AppendUint(b[:0], c.vers.gen.Load(), 10))
}

// forgetFlight makes the next read of key start a flight of its own
// rather than join one that began before key changed.
func (c *Cache) forgetFlight(key string) {
	fk := c.flightKey(key)
	c.flights.forget(fk)
	c.flights.forget(fk + flightSkipL1)
	c.flights.forget(fk + flightSkipL2)
}

// flightSkipL1 and flightSkipL2 end the flight keys of loads that skip
// L1 (SkipL1) or L2 (SkipL2).
const (
	flightSkipL1 = "\x00skip-l1"
	flightSkipL2 = "\x00skip-l2"
)

// loaderContext keeps ctx's values, drops its cancellation, and ends when
// the cache closes.
func (c *Cache) loaderContext(ctx context.Context) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(c.ctx, cancel)
	return lctx, func() { stop(); cancel() }
}

type fetched[T any] struct {
	v   T
	res Result
}

// fetchLocked runs inside the key's flight: it re-reads both tiers, since
// an earlier flight may have filled them, then loads.
func fetchLocked[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T], opts []SetOption) (any, error) {
	if len(opts) > 0 && applySet(opts).skipL2 {
		return fetchLocal(ctx, c, key, load, opts)
	}
	var v T
	e, src, stale, err := c.entryFrom(ctx, key, c.l1For(opts))
	switch {
	case err == nil && e.Negative:
		return nil, ErrNotFound
	case err == nil:
		if err := c.assign(e, &v); err != nil {
			return nil, err
		}
		c.keepDecoded(key, e, v)
		maybeRefresh(c, key, e, load, opts)
		return fetched[T]{v, c.result(e, src)}, nil
	case !errors.Is(err, ErrNotFound):
		if stale != nil && stale.Stale && stale.ExpiresAt > c.now() {
			// A fail-safe value within its throttle window: it answers
			// until the window ends, and only then is the loader tried.
			var sv T
			if c.assign(stale, &sv) == nil {
				return fetched[T]{sv, Result{Source: SourceStale, Stale: true}}, nil
			}
		}
		// L2 trouble: the loader still answers (graceful degradation).
		c.logger.Debug("tiercache: L2 read failed, loading", "key", truncKey(key), "err", err)
	}
	l2ok := err == nil || errors.Is(err, ErrNotFound)
	if l2ok && c.opts.Lock.Enabled {
		if got, ok := waitForHolder[T](ctx, c, key); ok {
			return got, nil
		}
	}
	ctx = withAdapt(ctx)
	v, err = loadWithTimeouts(ctx, c, key, load, opts, stale)
	if errors.Is(err, errServedStale) {
		return fetchedStale[T](c, key, stale)
	}
	if errors.Is(err, ErrNotFound) {
		c.storeNegative(ctx, key)
		return nil, ErrNotFound
	}
	if err != nil {
		if stale != nil {
			return fetchedStale[T](c, key, stale)
		}
		return nil, err
	}
	return fetched[T]{v, c.cacheLoaded(ctx, key, v, adaptedOpts(ctx, opts))}, nil
}

// fetchLocal is fetchLocked for SkipL2: L1 alone, then the loader, whose
// value is kept in L1 alone. A value L1 holds past its expiry (or a
// softly invalidated one) is the fail-safe fallback.
func fetchLocal[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T], opts []SetOption) (any, error) {
	var v T
	rb := c.readBudget(ctx)
	e, src, err := c.fromL1(&rb, c.l1, key)
	rb.release()
	if err == nil && src != SourceNone {
		if e.Negative {
			return nil, ErrNotFound
		}
		if err := c.assign(e, &v); err == nil {
			return fetched[T]{v, c.result(e, src)}, nil
		}
	}
	stale := c.staleL1(key)
	ctx = withAdapt(ctx)
	v, err = loadWithTimeouts(ctx, c, key, load, opts, stale)
	switch {
	case errors.Is(err, errServedStale):
		return fetchedStale[T](c, key, stale)
	case errors.Is(err, ErrNotFound):
		return nil, ErrNotFound
	case err != nil && stale != nil:
		return fetchedStale[T](c, key, stale)
	case err != nil:
		return nil, err
	}
	return fetched[T]{v, c.cacheLoaded(ctx, key, v, adaptedOpts(ctx, opts))}, nil
}

// errServedStale tells fetchLocked that the soft timeout fired: the stale
// value answers now and the loader finishes in the background.
var errServedStale = errors.New("served stale")

// fetchedStale answers with a fail-safe stale value, and keeps it in L1
// for FailSafe.Throttle so that the loader is not retried on every read.
func fetchedStale[T any](c *Cache, key string, stale *l1.Entry) (any, error) {
	var v T
	if err := c.assign(stale, &v); err != nil {
		return nil, err
	}
	if c.l1 != nil {
		now := c.now()
		th := stale.StaleCopy(now + int64(c.opts.FailSafe.Throttle))
		c.l1.SetIfUnchanged(key, th, c.l1.Snapshot(key), now)
	}
	return fetched[T]{v, Result{Source: SourceStale, Stale: true}}, nil
}

// loadWithTimeouts calls the loader under the soft and hard timeouts. On
// the soft timeout with a stale value at hand it returns errServedStale
// and lets the loader finish in the background, caching its result.
func loadWithTimeouts[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T], opts []SetOption, stale *l1.Entry) (T, error) {
	var zero T
	background := c.opts.LoaderSoftTimeout > 0 && stale != nil
	lctx, cancel := ctx, context.CancelFunc(func() {})
	if background {
		// The loader may outlive the flight: detach it from the flight's
		// context (it still ends when the cache closes).
		lctx, cancel = c.loaderContext(ctx)
	}
	if c.opts.LoaderHardTimeout > 0 {
		var cancelHard context.CancelFunc
		lctx, cancelHard = context.WithTimeout(lctx, c.opts.LoaderHardTimeout)
		prev := cancel
		cancel = func() { cancelHard(); prev() }
	}
	if !background {
		defer cancel()
		v, err := callLoader(lctx, c, key, load)
		if err != nil && lctx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			err = fmt.Errorf("%w after %v: %w", ErrLoaderTimeout, c.opts.LoaderHardTimeout, err)
		}
		return v, err
	}
	type res struct {
		v   T
		err error
	}
	done := make(chan res, 1)
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer cancel()
		v, err := callLoader(lctx, c, key, load)
		done <- res{v, err}
	}()
	soft := time.NewTimer(c.opts.LoaderSoftTimeout)
	defer soft.Stop()
	select {
	case r := <-done:
		return r.v, r.err
	case <-soft.C:
	}
	// Answer with the stale value; the loader's result, when it comes,
	// updates the cache.
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		r := <-done
		if r.err == nil {
			c.cacheLoaded(c.ctx, key, r.v, adaptedOpts(ctx, opts))
		}
	}()
	return zero, errServedStale
}

// cacheLoaded writes a loaded value to both tiers (not through the
// recovery queue: the loader can answer again) and describes it.
func (c *Cache) cacheLoaded(ctx context.Context, key string, v any, opts []SetOption) Result {
	ctx, cancel := c.fillContext(ctx)
	defer cancel()
	so := applySet(opts)
	res := Result{Source: SourceLoader}
	vs, err := c.stampFor(ctx, so.tags)
	if err == nil {
		var enc encoded
		if enc, err = c.encode(key, v, so, false, vs); err == nil {
			res = c.result(enc.entry, SourceLoader)
			if so.skipL2 && c.l1 != nil {
				c.keepLocal([]encoded{enc})
			} else {
				err = c.write(ctx, []encoded{enc}, false)
			}
		}
	}
	if err != nil {
		c.logger.Warn("tiercache: caching a loaded value failed", "key", truncKey(key), "err", err)
		if unavailable(err) && res.Source == SourceLoader && c.l1 != nil && c.opts.FailSafe.MaxDuration > 0 && c.opts.FailSafe.Throttle > 0 {
			c.keepUnconfirmed(key, res, v, so)
		}
	}
	return res
}

// keepUnconfirmed keeps a value loaded while L2 is unreachable in L1, as a
// fail-safe candidate for FailSafe.Throttle (at most its TTL): Fetches that
// find L2 still failing are answered with it, flagged stale, instead of
// calling the loader again. It is never read as an L1 hit: no invalidation
// from Redis can reach it, since Redis never served it.
func (c *Cache) keepUnconfirmed(key string, res Result, v any, so setOptions) {
	now := c.now()
	until := now + int64(c.opts.FailSafe.Throttle)
	vs := c.vers.lastStamp(so.tags)
	enc, err := c.encode(key, v, so, false, vs)
	if err != nil {
		return
	}
	if enc.entry.ExpiresAt != 0 {
		until = min(until, enc.entry.ExpiresAt)
	}
	cp := enc.entry.StaleCopy(until)
	cp.Unconfirmed = true
	c.l1.SetIfUnchanged(key, cp, c.l1.Snapshot(key), now)
}

// waitForHolder takes the fleet-wide lock for key. When another instance
// holds it, it waits (bounded by Lock.MaxWait) for that instance's value
// to appear in L2. ok means got answers the Fetch; otherwise the caller
// loads (it holds the lock, or waited long enough, or the lock failed).
func waitForHolder[T any](ctx context.Context, c *Cache, key string) (got any, ok bool) {
	if !c.lockedElsewhere(ctx, key) {
		return nil, false
	}
	return waitHolder[T](ctx, c, key)
}

// lockedElsewhere takes key's fleet-wide lock and reports whether another
// instance holds it. When this instance takes it, the lock is released
// once ctx (the flight's) ends, and expires by itself if we die.
func (c *Cache) lockedElsewhere(ctx context.Context, key string) bool {
	lk, err := c.TryLock(ctx, "fetch:"+key, c.opts.Lock.TTL)
	if err == nil {
		c.bg.Add(1)
		go func() {
			defer c.bg.Done()
			<-ctx.Done()
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			defer cancel()
			_ = lk.Unlock(uctx)
		}()
		return false
	}
	return errors.Is(err, ErrLocked)
}

// waitHolder waits, bounded by Lock.MaxWait and the lock's TTL, for the
// instance that holds key's lock to write key. ok means got answers.
func waitHolder[T any](ctx context.Context, c *Cache, key string) (got any, ok bool) {
	deadline := time.Now().Add(min(c.opts.Lock.MaxWait, c.opts.Lock.TTL)) // the holder's lock expires within its TTL
	wait, longest := lockPollFirst, lockPollMax
	if c.lockPoll[0] > 0 {
		wait, longest = c.lockPoll[0], c.lockPoll[1]
	}
	// Woken by the key's invalidation when the holder writes it (wake.go);
	// registered before each read, so that a write just after the read
	// still wakes the next wait.
	changed, unwatch := c.waiters.watch(key)
	defer func() { unwatch() }()
	// Without L1 only the reads of watched keys are tracked (tracking.go),
	// and the read that found key missing was not one: read it again at
	// once, watched, so that the holder's write is pushed to us.
	now := c.l1 == nil
	counted := false
	for time.Now().Before(deadline) {
		d := min(wait, time.Until(deadline))
		if now {
			d, now = 0, false
		} else if !counted {
			// Counted when it first blocks: a read that found the value
			// at once was no wait.
			c.counter.lockWaits.Add(1)
			counted = true
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, false
		case <-changed:
			t.Stop()
		case <-t.C:
			wait = min(wait*2, longest)
		}
		unwatch()
		changed, unwatch = c.waiters.watch(key)
		e, src, _, err := c.entry(ctx, key)
		if err == nil && !e.Negative {
			var v T
			if c.assign(e, &v) == nil {
				return fetched[T]{v, c.result(e, src)}, true
			}
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, false // L2 trouble: load for ourselves
		}
	}
	return nil, false
}

// maybeRefresh starts one background refresh of key when Options.
// EagerRefreshThreshold of its TTL has passed.
func maybeRefresh[T any](c *Cache, key string, e *l1.Entry, load LoaderFunc[T], opts []SetOption) {
	thr := c.opts.EagerRefreshThreshold
	if thr <= 0 || e.ExpiresAt == 0 || e.CreatedAt == 0 {
		return
	}
	at := e.CreatedAt + int64(thr*float64(e.ExpiresAt-e.CreatedAt))
	if c.now() < at {
		return
	}
	if _, running := c.eager.LoadOrStore(key, struct{}{}); running {
		return
	}
	c.counter.eagerRefreshes.Add(1)
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		defer c.eager.Delete(key)
		ctx, cancel := c.refreshContext()
		defer cancel()
		v, err := callLoader(ctx, c, key, load)
		if err != nil {
			c.logger.Debug("tiercache: eager refresh failed; the current value stays", "key", truncKey(key), "err", err)
			return
		}
		c.cacheLoaded(c.ctx, key, v, adaptedOpts(ctx, opts))
	}()
}

// keepDecoded remembers the decoded value in a fresh L1 entry so that the
// next Fetch of the same type skips decoding.
func (c *Cache) keepDecoded(key string, e *l1.Entry, v any) {
	if c.l1 != nil {
		e.SetValue(v)
	}
}

func callLoader[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T]) (v T, err error) {
	c.counter.loads.Add(1)
	ctx, call := c.obs.loadBegin(ctx, 1)
	defer c.loaderDone(&err, call)
	return load(ctx, key)
}

// loaderDone runs deferred after a loader call: it turns a panic into a
// LoaderPanicError, counts failures and records the call.
func (c *Cache) loaderDone(err *error, call timedCall) {
	if r := recover(); r != nil {
		*err = &LoaderPanicError{Value: r, Stack: debug.Stack()}
	}
	c.obs.loadEnd(call, *err)
	if *err != nil && !errors.Is(*err, ErrNotFound) {
		c.counter.loadErrors.Add(1)
	}
}

// storeNegative caches a loader's "not found".
func (c *Cache) storeNegative(ctx context.Context, key string) {
	if c.opts.NegativeTTL < 0 {
		return
	}
	ctx, cancel := c.fillContext(ctx)
	defer cancel()
	vs, err := c.stampFor(ctx, nil)
	var enc encoded
	if err == nil {
		enc, err = c.encode(key, nil, setOptions{}, true, vs)
	}
	if err == nil {
		err = c.write(ctx, []encoded{enc}, false)
	}
	if err != nil {
		c.logger.Warn("tiercache: caching a not-found failed", "key", truncKey(key), "err", err)
	}
}

// adaptKey is the context key of a load's adapted options (AdaptLoad).
type adaptKey struct{}

// adapted collects the options a loader sets with AdaptLoad.
type adapted struct {
	mu   sync.Mutex
	opts []SetOption
}

// AdaptLoad lets a loader decide how the value it is about to return is
// cached: called with the context Fetch or FetchMany gave the loader, opts
// (WithTTL, WithTags, WithL1TTL, SkipL1) apply to the write of what it
// returns, after the call's own options, so that they win. For FetchMany
// they apply to every key of the batch. It reports false, and does
// nothing, when ctx is not a loader's context. IfMatch, IfAbsent and
// ReportETag are refused (false).
func AdaptLoad(ctx context.Context, opts ...SetOption) bool {
	a, ok := ctx.Value(adaptKey{}).(*adapted)
	if !ok || checkFillOptions(opts) != nil {
		return false
	}
	a.mu.Lock()
	a.opts = append(a.opts, opts...)
	a.mu.Unlock()
	return true
}

// withAdapt gives a loader's context a place for AdaptLoad's options.
func withAdapt(ctx context.Context) context.Context {
	return context.WithValue(ctx, adaptKey{}, &adapted{})
}

// adaptedOpts returns opts followed by what the loader run under ctx set
// with AdaptLoad.
func adaptedOpts(ctx context.Context, opts []SetOption) []SetOption {
	a, ok := ctx.Value(adaptKey{}).(*adapted)
	if !ok {
		return opts
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.opts) == 0 {
		return opts
	}
	return append(slices.Clip(opts), a.opts...)
}

// l1For returns the L1 a call with opts reads and fills: none with SkipL1
// (or when L1 is disabled).
func (c *Cache) l1For(opts []SetOption) *l1.Cache {
	if len(opts) > 0 && applySet(opts).skipL1 {
		return nil
	}
	return c.l1
}

// refreshContext is the context of a background refresh's loader call:
// it ends when the cache closes or after LoaderHardTimeout, and collects
// the loader's AdaptLoad options.
func (c *Cache) refreshContext() (context.Context, context.CancelFunc) {
	ctx := withAdapt(c.ctx)
	if c.opts.LoaderHardTimeout > 0 {
		return context.WithTimeout(ctx, c.opts.LoaderHardTimeout)
	}
	return ctx, func() {}
}
