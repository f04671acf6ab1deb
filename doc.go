// Package tiercache is a two-tier cache: an in-process L1 (otter, bounded by
// bytes) in front of a shared L2, which is Redis (standalone, Sentinel or
// Cluster, through rueidis) or an in-memory store.
//
// Reads look in L1, then L2. Writes go to L2 first; the writer's L1 then
// keeps the value written (or loaded) once Redis has confirmed it is the
// key's current value, and a Delete drops the key from L1, so a Set or
// Delete that returned is visible to the same process at once. With
// Redis, server-assisted client-side caching tells the cache when a key it
// holds in L1 changes anywhere, and losing that link ends the freshness of
// every L1 entry at once.
//
// Fetch and FetchMany wrap a loader (cache-aside): concurrent Fetch and
// FetchMany calls share one load per key in a process (FetchMany loads
// the keys it leads in one batch call), a loader's ErrNotFound is
// cached for Options.NegativeTTL, and a loader's panic becomes a
// LoaderPanicError.
//
// Values are encoded with msgpack by default, with JSON for keys matching
// the codec rules (api:, response: and config: by default), compressed with
// s2 above a threshold, and wrapped in a small versioned envelope. A stored
// value that does not decode is a miss, counted in Stats and logged; bytes
// another program stored under a key read as ErrNotTiercache, or as raw
// values with Options.ReadPlainValues.
//
// Errors match the sentinel errors of this package with errors.Is: a miss
// is ErrNotFound; rejected input is ErrInvalidKey, ErrValueTooLarge,
// ErrNilLoader or ErrInvalidOptions, and nothing is written then.
package tiercache
