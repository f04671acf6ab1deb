package redisstore

import (
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
