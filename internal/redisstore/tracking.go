package redisstore

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/tiercache/tiercache/internal/l2"
)

// noStore is a rueidis.CacheStore that keeps nothing. Client-side caching
// must stay enabled in rueidis for it to turn tracking on and deliver
// invalidations, but the layer above (the L1) is the only client-side copy,
// and no per-connection memory is spent on a second one.
type noStore struct{}

func newNoStore(rueidis.CacheStoreOption) rueidis.CacheStore { return noStore{} }

// Flight always misses without a pending entry, so rueidis sends the read.
func (noStore) Flight(string, string, time.Duration, time.Time) (rueidis.RedisMessage, rueidis.CacheEntry) {
	return rueidis.RedisMessage{}, nil
}

// Update keeps nothing. It returns the server-side expiry when rueidis knows
// one and 0 (unknown) otherwise: rueidis stores the result as the reply's
// client-side expiry, and a negative value would corrupt it.
func (noStore) Update(_, _ string, val rueidis.RedisMessage) int64 {
	if pxat := val.CachePXAT(); pxat > 0 {
		return pxat
	}
	return 0
}

// Cancel, Delete and Close have nothing to drop: no entry is ever pending
// or stored.
func (noStore) Cancel(string, string, error)  {}
func (noStore) Delete([]rueidis.RedisMessage) {}
func (noStore) Close(error)                   {}

// invalidations adapts the rueidis callback to l2.Invalidation. closed
// silences it once the Store is closed: cluster connections close in the
// background and would otherwise keep reporting after Close.
func invalidations(fn func(l2.Invalidation), closed *atomic.Bool) func([]rueidis.RedisMessage) {
	return func(msgs []rueidis.RedisMessage) {
		if closed.Load() {
			return
		}
		// rueidis passes nil both for a FLUSHALL/FLUSHDB and when a
		// connection closes: either way the tracking state is gone.
		if msgs == nil {
			fn(l2.Invalidation{All: true})
			return
		}
		keys := make([]string, 0, len(msgs))
		for i := range msgs {
			k, err := msgs[i].ToString()
			if err != nil {
				// Not a key name: fall back to the conservative answer.
				fn(l2.Invalidation{All: true})
				return
			}
			keys = append(keys, k)
		}
		if len(keys) > 0 {
			fn(l2.Invalidation{Keys: keys})
		}
	}
}

// optInTTL is the client-side lifetime rueidis is given for a tracked read
// in OPTIN mode. noStore keeps nothing, so it bounds nothing; it only has
// to be positive.
const optInTTL = time.Hour

// optIn builds a GET of key for DoCache: in OPTIN mode rueidis sends it
// right after CLIENT CACHING YES, on the same connection, so that the
// server tracks key for this client. The static TTL spares the MULTI, PTTL
// and EXEC rueidis would otherwise wrap it in: the TTL is of no use to a
// store that keeps nothing.
func optIn(b rueidis.Builder, key string) rueidis.Cacheable {
	return b.Get().Key(key).Cache().ToStaticTTL()
}

// getMulti sends one GET per key, pipelined (rueidis groups them by node);
// with TrackOnly, the GETs of the keys it picks are tracked reads.
func (s *Store) getMulti(ctx context.Context, c rueidis.Client, keys []string) []rueidis.RedisResult {
	var tracked []int // indexes of the keys to track
	if s.trackOnly != nil {
		for i, k := range keys {
			if s.trackOnly(k) {
				tracked = append(tracked, i)
			}
		}
	}
	if len(tracked) == 0 {
		multi := make([]rueidis.Completed, len(keys))
		for i, k := range keys {
			multi[i] = c.B().Get().Key(k).Build()
		}
		return c.DoMulti(ctx, multi...)
	}
	if len(tracked) == len(keys) {
		multi := make([]rueidis.CacheableTTL, len(keys))
		for i, k := range keys {
			multi[i] = rueidis.CT(optIn(c.B(), k), optInTTL)
		}
		return c.DoMultiCache(ctx, multi...)
	}
	// A mix: the tracked reads and the others as two pipelines.
	out := make([]rueidis.RedisResult, len(keys))
	ct := make([]rueidis.CacheableTTL, len(tracked))
	for j, i := range tracked {
		ct[j] = rueidis.CT(optIn(c.B(), keys[i]), optInTTL)
	}
	var plain []rueidis.Completed
	var plainIdx []int
	for i, k := range keys {
		if j, _ := slices.BinarySearch(tracked, i); j < len(tracked) && tracked[j] == i {
			continue
		}
		plain = append(plain, c.B().Get().Key(k).Build())
		plainIdx = append(plainIdx, i)
	}
	for j, r := range c.DoMultiCache(ctx, ct...) {
		out[tracked[j]] = r
	}
	for j, r := range c.DoMulti(ctx, plain...) {
		out[plainIdx[j]] = r
	}
	return out
}
