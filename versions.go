package tiercache

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/tiercache/tiercache/internal/l1"
	"github.com/tiercache/tiercache/internal/l2"
)

// Tag invalidation and Clear in O(1).
//
// Every tag has a version counter in L2 under "<namespace>#t:<tag>", and the
// namespace has one under "<namespace>#ns". An entry records the versions
// current when it was written. InvalidateTags increments the tags' counters
// and Clear the namespace's: one single-key INCR each, whatever the number
// of entries. A read compares an entry's recorded versions with the current
// ones and treats any difference as a miss; invalidated entries are never
// rewritten, they age out by TTL.
//
// A version key that does not exist reads as version 0, which no entry
// ever records: a writer that finds a version key missing first creates it
// with a random base in [1, 2^34) (SET NX). So if Redis loses a version key
// (eviction, a failover without persistence), the entries recorded against
// it do not come back to life: the recreated key starts elsewhere.
//
// Soft invalidation (InvalidateTagsSoft, ClearSoft) adds softStep to a
// counter instead of 1. An entry whose recorded versions differ from the
// current ones only by multiples of softStep was invalidated softly: it
// is stale, no longer an answer, but still a fail-safe fallback while it
// is refreshed. Any other difference is a hard invalidation. A hard one
// is still a single INCR, so instances that know nothing of soft
// invalidation read both kinds as hard; and a difference made of hard
// increments reads as soft only if they number a multiple of 2^32.
//
// The current versions are cached here and kept coherent like any key: they
// are read with tracking, so a change anywhere invalidates them. A version
// read from L2 is stored only if no invalidation or link loss happened
// while it was in flight (gen), the same guard the L1 uses.

// softStep is what a soft invalidation adds to a version counter.
const softStep = 1 << 32

// validity is what the versions say about an entry.
type validity uint8

const (
	validUnknown validity = iota // a version is not cached (quick only)
	validYes                     // every recorded version is current
	validSoft                    // invalidated softly only: stale, a fail-safe fallback
	validNo                      // invalidated
)

// relate compares a recorded version with the current one.
func relate(recorded, current uint64) validity {
	switch {
	case recorded == current:
		return validYes
	case current > recorded && (current-recorded)%softStep == 0:
		return validSoft
	}
	return validNo
}

// versions caches current tag and namespace versions.
type versions struct {
	nsKey  string // "<namespace>#ns"
	prefix string // "<namespace>#" — every version key starts with it

	// ns holds the namespace version + 1; 0 means unknown. It is read on
	// every L1 hit, so it lives outside the map.
	ns atomic.Uint64
	// suspended: the link may be holding notices back (liveness.go), so
	// no cached version is trusted; they are read from L2 meanwhile.
	suspended atomic.Bool

	mu  sync.RWMutex
	m   map[string]uint64 // tag version key -> version
	gen atomic.Uint64     // bumped by every invalidation and reset

	// pending holds version keys whose increment waits in the recovery
	// queue: entries carrying them are invalid here until it is applied,
	// or stale when every queued increment of the key is soft (true).
	pending  map[string]bool
	npending atomic.Int32

	// last holds the last version seen for each key, kept across resets.
	// A write while L2 is unreachable is stamped with it: an entry stamped
	// with an old version can only read as invalid, never wrongly valid.
	last map[string]uint64
}

func newVersions(namespace string) *versions {
	return &versions{nsKey: namespace + "#ns", prefix: namespace + "#", m: map[string]uint64{}, pending: map[string]bool{}, last: map[string]uint64{}}
}

func (v *versions) tagKey(tag string) string { return v.prefix + "t:" + tag }

// quick reports whether e's recorded versions are the current ones, using
// only what is cached. known is false when a version is not cached.
// An entry invalidated softly is not valid here; see quickValidity.
func (v *versions) quick(e *l1.Entry) (valid, known bool) {
	vd := v.quickValidity(e)
	return vd == validYes, vd != validUnknown
}

// quickValidity is quick's answer for e, telling soft invalidation apart.
func (v *versions) quickValidity(e *l1.Entry) validity {
	if e.Plain {
		return validYes // no versions: ReadPlainValues
	}
	if v.suspended.Load() {
		return validUnknown // the link may hold notices back: read them
	}
	out := validYes
	if v.npending.Load() > 0 {
		if out = v.pendingValidity(e); out == validNo {
			return out
		}
	}
	ns := v.ns.Load()
	if ns == 0 {
		return validUnknown
	}
	if out = max(out, relate(e.NsVer, ns-1)); out == validNo {
		return out
	}
	if len(e.Tags) == 0 {
		return out
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	for i, t := range e.Tags {
		cur, ok := v.m[v.tagKey(t)]
		if !ok {
			return validUnknown
		}
		if out = max(out, relate(e.TagVers[i], cur)); out == validNo {
			return out
		}
	}
	return out
}

// versionRead says where current takes versions from.
type versionRead uint8

const (
	// cachedVersions: from the tracked cache, reading the ones it does
	// not hold from L2.
	cachedVersions versionRead = iota
	// createVersions: as cachedVersions, and version keys that do not
	// exist are created first (writers need a real version to record).
	createVersions
	// freshVersions: every one from L2, whatever the cache holds. The
	// cache may lag behind an invalidation another instance has already
	// acknowledged (its push is still on the way); a conditional write's
	// check must not.
	freshVersions
)

// current returns the namespace version and the versions of tags, reading
// the ones it needs from L2 in one MGet (see versionRead).
func (v *versions) current(ctx context.Context, c *Cache, tags []string, how versionRead) (uint64, []uint64, error) {
	gen := v.gen.Load()
	tv := make([]uint64, len(tags))
	var missing []string
	var missIdx []int // index into tags, -1 for the namespace
	ns := v.ns.Load()
	// While suspended the cache may miss notices: read every version.
	fresh := how == freshVersions || v.suspended.Load()
	if ns == 0 || fresh {
		missing, missIdx = append(missing, v.nsKey), append(missIdx, -1)
	}
	v.mu.RLock()
	for i, t := range tags {
		k := v.tagKey(t)
		if cur, ok := v.m[k]; ok && !fresh {
			tv[i] = cur
		} else {
			missing, missIdx = append(missing, k), append(missIdx, i)
		}
	}
	v.mu.RUnlock()
	if len(missing) == 0 {
		return ns - 1, tv, nil
	}
	raw, err := c.store.MGet(ctx, missing)
	if err != nil {
		return 0, nil, fmt.Errorf("read tag versions: %w", err)
	}
	if how == createVersions {
		var absent []l2.Item
		for j, b := range raw {
			if b == nil {
				base := rand.Uint64N(1<<34-1) + 1
				absent = append(absent, l2.Item{Key: missing[j], Value: strconv.AppendUint(nil, base, 10)})
			}
		}
		if len(absent) > 0 {
			if err := c.store.SetNX(ctx, absent); err != nil {
				return 0, nil, fmt.Errorf("create tag versions: %w", err)
			}
			// Read them all again: a concurrent writer may have won.
			if raw, err = c.store.MGet(ctx, missing); err != nil {
				return 0, nil, fmt.Errorf("read tag versions: %w", err)
			}
		}
	}
	fetched := make(map[string]uint64, len(missing))
	for j, b := range raw {
		var n uint64
		if b != nil {
			if n, err = strconv.ParseUint(string(b), 10, 64); err != nil {
				return 0, nil, fmt.Errorf("%w: version key %q holds %q", ErrCorrupt, missing[j], truncKey(string(b)))
			}
		}
		fetched[missing[j]] = n
		if missIdx[j] < 0 {
			ns = n + 1
		} else {
			tv[missIdx[j]] = n
		}
	}
	v.store(fetched, gen)
	return ns - 1, tv, nil
}

// markPending and clearPending track increments waiting in the recovery
// queue; soft tells a soft increment.
func (v *versions) markPending(key string, soft bool) {
	v.mu.Lock()
	if wasSoft, ok := v.pending[key]; !ok {
		v.pending[key] = soft
		v.npending.Add(1)
	} else if wasSoft && !soft {
		v.pending[key] = false
	}
	v.mu.Unlock()
}

func (v *versions) clearPending(key string) {
	v.mu.Lock()
	if _, ok := v.pending[key]; ok {
		delete(v.pending, key)
		v.npending.Add(-1)
	}
	v.gen.Add(1)
	delete(v.m, key)
	if key == v.nsKey {
		v.ns.Store(0)
	}
	v.mu.Unlock()
}

// pendingIn reports whether an entry of encs carries a version whose
// increment waits in the recovery queue.
func (v *versions) pendingIn(encs []encoded) bool {
	if v.npending.Load() == 0 {
		return false
	}
	for _, e := range encs {
		if e.entry != nil && v.pendingValidity(e.entry) != validYes {
			return true
		}
	}
	return false
}

// pendingValidity says what the queued increments mean for e: valid when
// it carries none of their keys, soft when all those it carries are soft.
func (v *versions) pendingValidity(e *l1.Entry) validity {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := validYes
	see := func(key string) {
		if soft, ok := v.pending[key]; ok {
			if soft {
				out = max(out, validSoft)
			} else {
				out = validNo
			}
		}
	}
	see(v.nsKey)
	for _, t := range e.Tags {
		see(v.tagKey(t))
	}
	return out
}

// store caches fetched versions unless an invalidation or reset happened
// since gen was read.
func (v *versions) store(fetched map[string]uint64, gen uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gen.Load() != gen {
		return
	}
	for k, n := range fetched {
		if len(v.last) < 1<<16 || v.last[k] != 0 {
			v.last[k] = n
		}
		if k == v.nsKey {
			v.ns.Store(n + 1)
			continue
		}
		v.m[k] = n
	}
}

// lastStamp returns the last versions seen, for writes queued while L2 is
// unreachable.
func (v *versions) lastStamp(tags []string) stamp {
	v.mu.RLock()
	defer v.mu.RUnlock()
	st := stamp{ns: v.last[v.nsKey], tags: make([]uint64, len(tags))}
	for i, t := range tags {
		st.tags[i] = v.last[v.tagKey(t)]
	}
	return st
}

// invalidate forgets one version key; it reports whether key is one.
func (v *versions) invalidate(key string) bool {
	if len(key) <= len(v.prefix) || key[:len(v.prefix)] != v.prefix {
		return false
	}
	v.mu.Lock()
	v.gen.Add(1)
	if key == v.nsKey {
		v.ns.Store(0)
	} else {
		delete(v.m, key)
	}
	v.mu.Unlock()
	return true
}

// reset forgets every version, after the invalidation link was lost.
func (v *versions) reset() {
	v.mu.Lock()
	v.gen.Add(1)
	v.ns.Store(0)
	clear(v.m)
	v.mu.Unlock()
}

// validate reports whether e is still valid, reading versions from L2 when
// they are not cached. An entry invalidated softly is not valid.
func (c *Cache) validate(ctx context.Context, e *l1.Entry) (bool, error) {
	vd, err := c.validity(ctx, e)
	return vd == validYes, err
}

// validity is validate's answer for e, telling soft invalidation apart.
func (c *Cache) validity(ctx context.Context, e *l1.Entry) (validity, error) {
	if vd := c.vers.quickValidity(e); vd != validUnknown {
		return vd, nil
	}
	return c.validityFrom(ctx, e, cachedVersions)
}

// validityFrom is validity with the versions taken as how says.
func (c *Cache) validityFrom(ctx context.Context, e *l1.Entry, how versionRead) (validity, error) {
	if e.Plain {
		return validYes, nil // no versions: ReadPlainValues
	}
	ns, tv, err := c.vers.current(ctx, c, e.Tags, how)
	if err != nil {
		return validNo, err
	}
	out := relate(e.NsVer, ns)
	if c.vers.npending.Load() > 0 {
		out = max(out, c.vers.pendingValidity(e))
	}
	for i, n := range tv {
		out = max(out, relate(e.TagVers[i], n))
	}
	return out, nil
}

// InvalidateTags invalidates, in every instance and in L2, every entry
// written with any of tags before the call. It costs one INCR per tag,
// whatever the number of entries. After it returns, this instance serves
// none of those entries; other instances stop within the invalidation
// delay (see docs/consistency.md).
func (c *Cache) InvalidateTags(ctx context.Context, tags ...string) error {
	return c.invalidateTags(ctx, "invalidate tags", tags, false)
}

// InvalidateTagsSoft invalidates softly every entry written with any of
// tags before the call: in every instance and in L2, those entries become
// stale. Get and GetMany miss them, and Fetch and FetchMany load them
// again, but with Options.FailSafe a stale entry is still the fallback
// when that load fails or L2 is unreachable, as an expired entry is. It
// costs one INCRBY per tag, whatever the number of entries, and works on
// every topology. Without fail-safe it is InvalidateTags. A hard
// invalidation of a tag (InvalidateTags, Clear) overrides its soft ones:
// entries it covers are never served again.
func (c *Cache) InvalidateTagsSoft(ctx context.Context, tags ...string) error {
	return c.invalidateTags(ctx, "invalidate tags softly", tags, true)
}

func (c *Cache) invalidateTags(ctx context.Context, op string, tags []string, soft bool) error {
	if c.closed.Load() {
		return errorf("tiercache: %s: %w", op, ErrClosed)
	}
	if len(tags) == 0 {
		return nil
	}
	keys := make([]string, len(tags))
	for i, t := range tags {
		if err := checkTag(t); err != nil {
			return errorf("tiercache: %s: %w", op, err)
		}
		keys[i] = c.vers.tagKey(t)
	}
	return c.bump(ctx, op, keys, soft)
}

// Clear invalidates every entry of this cache's namespace, in every
// instance and in L2, with one INCR. Other namespaces and keys outside any
// namespace are untouched. It uses no FLUSHALL, FLUSHDB or SCAN; the old
// entries age out of Redis by their TTL.
func (c *Cache) Clear(ctx context.Context) error {
	if c.closed.Load() {
		return errorf("tiercache: clear: %w", ErrClosed)
	}
	err := c.bump(ctx, "clear", []string{c.vers.nsKey}, false)
	if c.l1 != nil && (err == nil || errors.Is(err, ErrQueued)) {
		c.l1.Clear()
	}
	return err
}

// ClearSoft invalidates softly every entry of this cache's namespace, in
// every instance and in L2, with one INCRBY: the entries become stale, as
// with InvalidateTagsSoft. L1 keeps them, as fail-safe fallbacks.
func (c *Cache) ClearSoft(ctx context.Context) error {
	if c.closed.Load() {
		return errorf("tiercache: clear softly: %w", ErrClosed)
	}
	return c.bump(ctx, "clear softly", []string{c.vers.nsKey}, true)
}

// bump increments version keys (softly: by softStep) and forgets their
// cached values, so that this instance re-reads them before trusting any
// entry that carries them.
func (c *Cache) bump(ctx context.Context, op string, keys []string, soft bool) error {
	kind, by := opIncr, int64(1)
	if soft && c.opts.FailSafe.MaxDuration > 0 {
		kind, by = opIncrSoft, softStep
	}
	err := c.sendOrQueue(c.rec != nil && c.rec.incrMustWait(keys),
		func() error {
			_, err := c.store.Incr(ctx, keys, by)
			return err
		},
		func(error) {
			for _, k := range keys {
				c.vers.invalidate(k)
			}
		},
		func() []recOp {
			ops := make([]recOp, len(keys))
			for i, k := range keys {
				ops[i] = recOp{kind: kind, key: k}
			}
			return ops
		})
	if err != nil {
		return errorf("tiercache: %s: %w", op, err)
	}
	if c.rec != nil {
		c.rec.remember(kind, keys, c.opts.Now())
	}
	c.counter.tagInvalidations.Add(uint64(len(keys)))
	c.obs.sent(op, len(keys))
	return nil
}
