package tiercache

import (
	"context"
	"fmt"
	"reflect"

	"github.com/tiercache/tiercache/internal/l1"
)

// entries returns the fresh entries for keys, looking in L1 first and then
// reading every L1 miss from L2 in one MGet (one round trip per node).
// Missing keys are absent from the map; negative entries are present.
// Each distinct key counts as one request of op.
func (c *Cache) entries(ctx context.Context, op Op, keys []string) (map[string]*l1.Entry, error) {
	out := make(map[string]*l1.Entry, len(keys))
	now := c.now()
	rb := c.readBudget(ctx) // L2 calls run under the call's read budget
	defer rb.release()
	var (
		miss []string
		toks []l1.Token
		skip map[string]struct{} // keys with a queued operation
	)
	for _, k := range keys {
		if _, dup := out[k]; dup {
			continue
		}
		if c.queued(k) {
			// Its queued operation is not applied yet: a miss.
			if _, dup := skip[k]; !dup {
				if skip == nil {
					skip = map[string]struct{}{}
				}
				skip[k] = struct{}{}
				c.counter.miss.Add(1)
				c.obs.reqs.add(op, ResultMiss, 1)
			}
			continue
		}
		if c.l1 != nil {
			if e, ok := c.l1.Get(k); ok && !e.Unconfirmed {
				if valid, err := c.validate(rb.get(), e); err != nil {
					c.obs.reqs.add(op, ResultError, uint64(len(keys)-len(out)))
					return out, err
				} else if valid {
					c.counter.hitL1.Add(1)
					c.obs.reqs.add(op, ResultHitL1, 1)
					out[k] = e
					continue
				}
			}
			toks = append(toks, c.l1.Snapshot(k))
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
		c.obs.reqs.add(op, ResultError, uint64(len(miss)))
		return out, err
	}
	for i, k := range miss {
		if vals[i] == nil {
			c.counter.miss.Add(1)
			c.obs.reqs.add(op, ResultMiss, 1)
			continue
		}
		e, expired, err := c.decodeEntry(k, vals[i], now)
		if err != nil {
			c.obs.reqs.add(op, ResultMiss, 1)
			continue // a miss; corrupt values are counted and logged
		}
		if expired {
			c.counter.miss.Add(1)
			c.obs.reqs.add(op, ResultMiss, 1)
			continue
		}
		if valid, err := c.validate(rb.get(), e); err != nil {
			c.obs.reqs.add(op, ResultError, uint64(len(miss)-i))
			return out, err
		} else if !valid {
			c.counter.miss.Add(1)
			c.obs.reqs.add(op, ResultMiss, 1)
			continue
		}
		if c.l1 != nil {
			c.l1.SetIfUnchanged(k, e, toks[i], now)
		}
		c.counter.hitL2.Add(1)
		c.obs.reqs.add(op, ResultHitL2, 1)
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
// trip per node.
func (c *Cache) GetMany(ctx context.Context, keys []string, dst any) error {
	if err := c.checkKeys("get", keys); err != nil {
		return err
	}
	mv, err := mapDest(dst)
	if err != nil {
		return err
	}
	c.accessed(keys)
	es, err := c.entries(ctx, OpGetMany, keys)
	if err != nil {
		return fmt.Errorf("tiercache: get many: %w", err)
	}
	elem := mv.Type().Elem()
	for k, e := range es {
		if e.Negative {
			continue
		}
		p := reflect.New(elem)
		if err := c.assign(e, p.Interface()); err != nil {
			return keyErr("get", k, err)
		}
		mv.SetMapIndex(reflect.ValueOf(k), p.Elem())
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
		return fmt.Errorf("tiercache: set many: %w", err)
	}
	so := applySet(opts)
	list := make([]Item, 0, len(items))
	for k, v := range items {
		list = append(list, Item{Key: k, Value: v, TTL: so.ttl, Tags: so.tags})
	}
	return c.SetItems(ctx, list)
}

// FetchMany returns the values of keys, loading every key that misses
// both tiers with one call of load, which receives only those keys. Keys
// the loader does not return are cached as not found (Options.NegativeTTL)
// and left out of the result, as are keys already cached as not found.
func FetchMany[T any](ctx context.Context, c *Cache, keys []string, load BatchLoaderFunc[T], opts ...SetOption) (map[string]T, error) {
	if err := c.checkKeys("fetch", keys); err != nil {
		return nil, err
	}
	if load == nil {
		return nil, fmt.Errorf("tiercache: fetch many: %w", ErrNilLoader)
	}
	if err := checkFillOptions(opts); err != nil {
		return nil, fmt.Errorf("tiercache: fetch many: %w", err)
	}
	c.accessed(keys)
	out := make(map[string]T, len(keys))
	es, err := c.entries(ctx, OpFetchMany, keys)
	if err != nil {
		// L2 trouble: load everything (graceful degradation).
		c.logger.Debug("tiercache: L2 read failed, loading", "keys", len(keys), "err", err)
	}
	var missing []string
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
		if e.Negative {
			continue
		}
		var v T
		if err := c.assign(e, &v); err != nil {
			missing = append(missing, k) // undecodable as T: reload
			continue
		}
		c.keepDecoded(k, e, v)
		out[k] = v
	}
	if len(missing) == 0 {
		return out, nil
	}
	loaded, err := callBatchLoader(ctx, c, missing, load)
	if err != nil {
		return out, fmt.Errorf("tiercache: fetch many (%d keys): %w", len(missing), err)
	}
	ctx, cancel := c.fillContext(ctx)
	defer cancel()
	so := applySet(opts)
	vs, err := c.stampFor(ctx, so.tags)
	if err != nil {
		for _, k := range missing {
			if v, ok := loaded[k]; ok {
				out[k] = v
			}
		}
		c.logger.Warn("tiercache: loaded values not cached", "keys", len(missing), "err", err)
		return out, nil
	}
	encs := make([]encoded, 0, len(missing))
	for _, k := range missing {
		v, ok := loaded[k]
		var enc encoded
		if ok {
			out[k] = v
			enc, err = c.encode(k, v, so, false, vs)
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
	if len(encs) > 0 {
		if err := c.write(ctx, encs, false); err != nil {
			c.logger.Warn("tiercache: caching loaded values failed", "keys", len(encs), "err", err)
		}
	}
	return out, nil
}

func callBatchLoader[T any](ctx context.Context, c *Cache, keys []string, load BatchLoaderFunc[T]) (m map[string]T, err error) {
	c.counter.loads.Add(1)
	ctx, call := c.obs.loadBegin(ctx, len(keys))
	defer c.loaderDone(&err, call)
	return load(ctx, keys)
}
