package tiercache

import "strings"

// Client tracking without an L1.
//
// With an L1, Redis must track every data key this instance reads, since
// a copy of it may sit in L1 until Redis reports a change. Without one
// (L1.Disabled) there is no copy to drop: tracking every read would only
// fill Redis's tracking table, one entry per key read per instance, and
// bring an invalidation for each of those keys whenever it changes. Two
// things still rely on invalidations then: the cached tag and namespace
// versions (versions.go), which every read of an entry is checked against,
// and the fleet-lock waiters (wake.go), woken when the lock holder writes
// the key. So the connections track in OPTIN mode, and only the reads of
// version keys and of keys a lock waiter is watching are tracked
// (CLIENT CACHING YES before each). The liveness probe runs as with an L1,
// since a silent link would otherwise hold back a version's invalidation.

// trackOnly returns which keys' reads Redis must track for this cache: nil
// (every key read) with an L1; without one, the version keys and the keys
// a lock waiter watches.
func (c *Cache) trackOnly() func(key string) bool {
	if c.l1 != nil {
		return nil
	}
	return func(key string) bool {
		if strings.HasPrefix(key, c.vers.prefix) {
			return true
		}
		return c.waiters.n.Load() > 0 && strings.HasPrefix(key, c.prefix) && c.waiters.watched(key[len(c.prefix):])
	}
}
