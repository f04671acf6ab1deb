package tiercache

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"

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
// process share one loader call. opts apply to the write of a loaded
// value.
//
// The loader runs on a context that keeps ctx's values but not its
// cancellation, so one caller giving up does not fail the others waiting
// for the same key; each caller still returns when its own ctx ends.
func Fetch[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T], opts ...SetOption) (T, error) {
	if c.l1 != nil && load != nil && !c.closed.Load() && c.opts.OnAccess == nil {
		// The L1 hit path, kept free of Result bookkeeping. A fresh
		// entry exists only under a valid key.
		if e, ok := c.l1.Get(key); ok && !e.Negative {
			if v, ok := e.Value().(T); ok {
				if valid, known := c.vers.quick(e); valid && known {
					c.counter.hitL1.Add(1)
					return v, nil
				}
			}
		}
	}
	v, _, err := FetchResult(ctx, c, key, load, opts...)
	return v, err
}

// FetchResult is Fetch that also reports where the value came from.
func FetchResult[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T], opts ...SetOption) (T, Result, error) {
	var zero T
	if err := c.check("fetch", key); err != nil {
		return zero, Result{}, err
	}
	if load == nil {
		return zero, Result{}, keyErr("fetch", key, ErrNilLoader)
	}
	if err := checkTags(applySet(opts).tags); err != nil {
		return zero, Result{}, keyErr("fetch", key, err)
	}
	if c.opts.OnAccess != nil {
		c.opts.OnAccess(key)
	}
	if c.l1 != nil {
		if e, ok := c.l1.Get(key); ok {
			if valid, known := c.vers.quick(e); valid && known {
				if e.Negative {
					return zero, Result{}, keyErr("fetch", key, ErrNotFound)
				}
				if v, ok := e.Value().(T); ok {
					c.counter.hitL1.Add(1)
					return v, c.result(e, SourceL1), nil
				}
			}
		}
	}
	return fetchSlow(ctx, c, key, load, opts)
}

func fetchSlow[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T], opts []SetOption) (T, Result, error) {
	var zero T
	ch := c.flights.DoChan(key, func() (any, error) {
		return fetchLocked(context.WithoutCancel(ctx), c, key, load, opts)
	})
	select {
	case <-ctx.Done():
		return zero, Result{}, keyErr("fetch", key, ctx.Err())
	case r := <-ch:
		if r.Err != nil {
			return zero, Result{}, keyErr("fetch", key, r.Err)
		}
		f := r.Val.(fetched[T])
		return f.v, f.res, nil
	}
}

type fetched[T any] struct {
	v   T
	res Result
}

// fetchLocked runs inside the key's flight: it re-reads both tiers, since
// an earlier flight may have filled them, then loads.
func fetchLocked[T any](ctx context.Context, c *Cache, key string, load LoaderFunc[T], opts []SetOption) (any, error) {
	var v T
	e, src, err := c.entry(ctx, key)
	switch {
	case err == nil && e.Negative:
		return nil, ErrNotFound
	case err == nil:
		if err := c.assign(e, &v); err != nil {
			return nil, err
		}
		c.keepDecoded(key, e, v)
		return fetched[T]{v, c.result(e, src)}, nil
	case !errors.Is(err, ErrNotFound):
		// L2 trouble: the loader still answers (graceful degradation).
		c.logger.Debug("tiercache: L2 read failed, loading", "key", truncKey(key), "err", err)
	}
	v, err = callLoader(ctx, c, key, load)
	if errors.Is(err, ErrNotFound) {
		c.storeNegative(ctx, key)
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	so := applySet(opts)
	res := Result{Source: SourceLoader}
	vs, err := c.stampFor(ctx, so.tags)
	if err == nil {
		var enc encoded
		if enc, err = c.encode(key, v, so, false, vs); err != nil {
			return nil, err // the value cannot be cached: a caller error
		}
		res = c.result(enc.entry, SourceLoader)
		err = c.write(ctx, []encoded{enc})
	}
	if err != nil {
		c.logger.Warn("tiercache: caching a loaded value failed", "key", truncKey(key), "err", err)
	}
	return fetched[T]{v, res}, nil
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
	defer func() {
		if r := recover(); r != nil {
			err = &LoaderPanicError{Value: r, Stack: debug.Stack()}
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			c.counter.loadErrors.Add(1)
		}
	}()
	return load(ctx, key)
}

// storeNegative caches a loader's "not found".
func (c *Cache) storeNegative(ctx context.Context, key string) {
	if c.opts.NegativeTTL < 0 {
		return
	}
	vs, err := c.stampFor(ctx, nil)
	var enc encoded
	if err == nil {
		enc, err = c.encode(key, nil, setOptions{}, true, vs)
	}
	if err == nil {
		err = c.write(ctx, []encoded{enc})
	}
	if err != nil {
		c.logger.Warn("tiercache: caching a not-found failed", "key", truncKey(key), "err", err)
	}
}
