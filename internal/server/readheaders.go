package server

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache"
)

// readHeaders keeps the headers of recent GET answers that describe the
// value (cacheHeaders, and Content-Type), so that the answers that carry
// the same ones share them: those of one stored value within the same
// second of its age and of its TTL are the same, and are built once
// instead of once per answer. A GET from L1 then allocates nothing for
// its headers.
//
// Each value is a slice of one string with no spare capacity, set in an
// answer's header map as it is and never written again: Header.Add
// copies such a slice rather than append to it, and Set replaces it.
// An ETag hashes to a pair of slots, which hold the sets of the last two
// values read that hashed to it: a set replaces its value's older one,
// else the pair's older set.
// The zero readHeaders is empty and ready.
type readHeaders struct {
	slots [readHeaderSlots]atomic.Pointer[headerSet]
}

// readHeaderSlots is the number of values whose headers readHeaders
// keeps at a time, at best: 8 bytes each while empty, about 600 each
// once used.
const readHeaderSlots = 4096

// headerSet is the headers of the answers described by its key.
type headerSet struct {
	key         headerKey
	cache       []headerField // cacheHeaders' headers
	contentType []string
}

// headerKey is all that the headers of a headerSet depend on, the times
// in whole seconds as cacheHeaders counts them.
type headerKey struct {
	etag, contentType string
	source            tiercache.Source
	stale, expires    bool
	age               int64 // ageSeconds
	ttl               int64 // whole seconds of freshness left, rounded down
}

type headerField struct {
	name string
	vals []string
}

// get returns the headers of an answer with res, read at now, whose
// Content-Type is contentType.
func (rh *readHeaders) get(res tiercache.Result, etag, contentType string, now time.Time) *headerSet {
	k := headerKey{etag: etag, contentType: contentType, source: res.Source, stale: res.Stale, age: ageSeconds(res, now)}
	if !res.ExpiresAt.IsZero() {
		k.expires, k.ttl = true, floorSeconds(res.ExpiresAt.Sub(now))
	}
	i := slotPair(etag)
	newer, older := &rh.slots[i], &rh.slots[i+1]
	n, o := newer.Load(), older.Load()
	switch {
	case n != nil && n.key == k:
		return n
	case o != nil && o.key == k:
		return o
	}
	hs := newHeaderSet(k, res, now)
	switch {
	case n != nil && n.key.etag == etag:
		newer.Store(hs)
	case o != nil && o.key.etag == etag:
		older.Store(hs)
	default:
		older.Store(n)
		newer.Store(hs)
	}
	return hs
}

// slotPair is the first of the two slots of an ETag: an FNV-1a hash.
// Values are written with ETags that the cache computes, which a client
// cannot choose.
func slotPair(etag string) uint32 {
	h := uint32(2166136261)
	for i := range len(etag) {
		h = (h ^ uint32(etag[i])) * 16777619
	}
	return h % (readHeaderSlots / 2) * 2
}

// newHeaderSet builds the headers of key k with cacheHeaders.
func newHeaderSet(k headerKey, res tiercache.Result, now time.Time) *headerSet {
	h := make(http.Header, 8)
	cacheHeaders(h, res, k.etag, now)
	hs := &headerSet{key: k, cache: make([]headerField, 0, len(h)), contentType: []string{k.contentType}}
	for name, vals := range h {
		hs.cache = append(hs.cache, headerField{name, vals[:len(vals):len(vals)]})
	}
	return hs
}

// setCache sets the set's cacheHeaders in h.
func (hs *headerSet) setCache(h http.Header) {
	for _, f := range hs.cache {
		h[f.name] = f.vals
	}
}

// floorSeconds is d in whole seconds, rounded down: an expired value is
// at least one second past.
func floorSeconds(d time.Duration) int64 {
	secs := int64(d / time.Second)
	if d < 0 && d%time.Second != 0 {
		secs--
	}
	return secs
}
