package tiercache

import (
	"context"
	"errors"
	"reflect"

	"github.com/tiercache/tiercache/internal/l1"
)

// KeyResult is the outcome of one key of LookupMany.
type KeyResult struct {
	Key string
	// Result says where the value came from, whether it is stale, and
	// when it was written and expires. It is the zero Result unless Err
	// is nil.
	Result Result
	// Err is nil when the value is in the destination map. It matches
	// ErrNotFound on a miss (a cached "not found" included), and
	// otherwise says why this key could not be read: L2 unreachable or
	// failing with no fail-safe copy in L1 (ErrUnavailable,
	// ErrCircuitOpen, a context error...), or a value that does not
	// decode into the map's element type.
	Err error
}

// LookupMany is GetMany that reports, per key, how the read went: one
// KeyResult per distinct key, in the order of keys. dst is a non-nil
// map[string]T or a pointer to one (a nil map behind the pointer is
// allocated); found keys are added to it. T may be Raw, to receive the
// stored bytes without decoding them.
//
// L1 misses are read from L2 in one round trip per node. An L2 failure
// fails only the keys it concerns: a key L1 holds a fail-safe copy of
// (Options.FailSafe) is answered from it, with Result.Source
// SourceStale, and the other keys get the error in their KeyResult. The returned error is for the call as a whole: an
// invalid key (nothing is read), an invalid destination, or a closed
// cache. Each distinct key counts as one read of OpGetMany in
// Counters.Requests.
func (c *Cache) LookupMany(ctx context.Context, keys []string, dst any) ([]KeyResult, error) {
	if err := c.checkKeys("get", keys); err != nil {
		return nil, err
	}
	mv, err := mapDest(dst)
	if err != nil {
		return nil, err
	}
	c.accessed(keys)
	found := c.lookupEntries(ctx, keys)
	out := make([]KeyResult, len(found))
	elem := mv.Type().Elem()
	for i, f := range found {
		out[i].Key = f.key
		if f.err == nil && f.e.Negative {
			f.err = ErrNotFound
		}
		if f.err == nil {
			p := reflect.New(elem)
			if f.err = c.assign(f.e, p.Interface()); f.err == nil {
				mv.SetMapIndex(reflect.ValueOf(f.key), p.Elem())
				out[i].Result = c.result(f.e, f.src)
			}
		}
		out[i].Err = keyErr("get", f.key, f.err)
	}
	return out, nil
}

// keyEntry is what lookupEntries found for one key.
type keyEntry struct {
	key string
	e   *l1.Entry // nil when err is set
	src Source
	err error
}

// lookupEntries finds the entry of each distinct key of keys, in order:
// from L1 when fresh there, else from L2 in one MGet for every L1 miss.
// A key whose read failed gets L1's fail-safe copy when there is one. Each
// key counts as one request of OpGetMany.
func (c *Cache) lookupEntries(ctx context.Context, keys []string) []keyEntry {
	rb := c.readBudget(ctx) // L2 calls run under the call's read budget
	defer rb.release()
	now := c.now()
	res := make([]keyEntry, 0, len(keys))
	seen := make(map[string]struct{}, len(keys))
	var (
		miss []int // indexes in res of the keys to read from L2
		toks []l1.Token
	)
	for _, k := range keys {
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		res = append(res, keyEntry{key: k})
		r := &res[len(res)-1]
		if c.queued(k) {
			r.err = ErrNotFound // its queued operation is not applied yet: a miss
			continue
		}
		if c.l1 != nil {
			e, src, err := c.fromL1(&rb, c.l1, k)
			if err != nil {
				r.err = err
				continue
			}
			if src != SourceNone {
				r.e, r.src = e, src
				continue
			}
			toks = append(toks, c.l1.Snapshot(k))
		}
		miss = append(miss, len(res)-1)
	}
	if len(miss) > 0 {
		c.readMissing(rb.get(), res, miss, toks, now)
	}
	for i := range res {
		r := &res[i]
		if r.err != nil && !errors.Is(r.err, ErrNotFound) {
			if st := c.staleL1(r.key); st != nil {
				// L2 is failing: fail-safe serves the stale value, flagged.
				r.e, r.src, r.err = st, SourceStale, nil
			}
		}
		c.obs.reqs.add(OpGetMany, resultOf(r.src, r.err), 1)
	}
	return res
}

// readMissing reads the keys of res at the indexes miss from L2 in one
// MGet, and stores what it finds in res and, when no invalidation came in
// between (toks), in L1.
func (c *Cache) readMissing(ctx context.Context, res []keyEntry, miss []int, toks []l1.Token, now int64) {
	full := make([]string, len(miss))
	for j, i := range miss {
		full[j] = c.prefix + res[i].key
	}
	vals, err := c.store.MGet(ctx, full)
	if err != nil {
		c.counter.errors.Add(1)
		for _, i := range miss {
			res[i].err = err
		}
		return
	}
	for j, i := range miss {
		r := &res[i]
		if vals[j] == nil {
			r.err = ErrNotFound
			continue
		}
		e, expired, err := c.decodeEntry(r.key, vals[j], now)
		if err != nil {
			r.err = err // a miss: corrupt (counted and logged), or not tiercache's
			continue
		}
		if expired {
			r.err = ErrNotFound
			continue
		}
		valid, err := c.validate(ctx, e)
		if err != nil {
			c.counter.errors.Add(1)
			r.err = err
			continue
		}
		if !valid {
			r.err = ErrNotFound
			continue
		}
		if c.l1 != nil {
			c.l1.SetIfUnchanged(r.key, e, toks[j], now)
		}
		r.e, r.src = e, SourceL2
	}
}
