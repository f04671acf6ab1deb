// Package l1 is the in-process first tier: an otter cache bounded by bytes,
// with per-entry expiry and the bookkeeping that keeps it coherent with L2.
//
// Coherence rests on two counters. Every invalidation of a key bumps that
// key's stripe counter; losing the invalidation link bumps a global epoch.
// A reader snapshots both (Token) before it reads L2 and stores what it read
// only if neither moved (SetIfUnchanged), so an invalidation that races the
// read can never leave an old value behind. Entries written under an older
// epoch are no longer fresh.
package l1

import (
	"hash/maphash"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// stripes is the number of per-key invalidation counters. Keys share
// stripes; a collision only costs a skipped L1 fill, never correctness.
const stripes = 1 << 12

// entryOverhead approximates the bytes an entry costs beyond its key and
// payload: the Entry struct, otter's node and map slot.
const entryOverhead = 160

// Entry is one cached value.
type Entry struct {
	// The fields an L1 hit reads come first, to share a cache line, and
	// the decoded value is held in the entry itself: a hit touches no
	// other object of the cache's before the value.
	epoch uint64
	NsVer uint64 // the namespace version when written
	// decState publishes dec: decNone, decSetting (one writer fills dec),
	// decSet (dec is read-only from then on).
	decState atomic.Uint32
	Negative bool // a cached "not found"
	Stale    bool // a fail-safe copy: served, but reported as stale
	// Unconfirmed marks a value loaded while L2 was unreachable, or an
	// expired or softly invalidated one kept as a fail-safe candidate
	// (CandidateCopy): it is never read as an L1 hit, only served as
	// fail-safe while L2 or a loader fails.
	Unconfirmed bool
	Codec       byte
	// Plain marks bytes stored by another program, read as a raw value
	// (Options.ReadPlainValues): no versions, so no tag or namespace
	// invalidation applies to it.
	Plain bool
	dec   Decoded // valid once decState is decSet
	Tags  []string

	TagVers     []uint64      // the tags' versions when written, same order
	Payload     []byte        // codec output
	CreatedAt   int64         // when written, unix nanoseconds
	ExpiresAt   int64         // logical expiry, unix nanoseconds; 0 = none
	ContentType string        // the media type stored with the value; "" for none
	MaxAge      time.Duration // when > 0, the longest L1 keeps it (a per-call limit)
	ttl         time.Duration // how long L1 keeps it
	etag        atomic.Pointer[string]
}

// Decoded is an entry's decoded value, with what copying it into a
// caller's pointer needs, worked out once.
type Decoded struct {
	PtrType reflect.Type // the type of a pointer to V: what Get's dst must be
	V       any
	RV      reflect.Value // reflect.ValueOf(V)
}

// The states of Entry.decState.
const (
	decNone uint32 = iota
	decSetting
	decSet
)

// Value returns the decoded value, or nil when none was remembered.
func (e *Entry) Value() any {
	if e.decState.Load() == decSet {
		return e.dec.V
	}
	return nil
}

// Decoded returns the decoded value and its reflection data, or nil. The
// caller must not change it.
func (e *Entry) Decoded() *Decoded {
	if e.decState.Load() == decSet {
		return &e.dec
	}
	return nil
}

// SetValue remembers the decoded value. Entries are shared between
// goroutines, so it is published atomically; the first value wins.
func (e *Entry) SetValue(v any) {
	if v == nil || e.decState.Load() != decNone {
		return
	}
	rv := reflect.ValueOf(v)
	d := Decoded{V: v, RV: rv, PtrType: reflect.PointerTo(rv.Type())}
	if e.decState.CompareAndSwap(decNone, decSetting) {
		e.dec = d
		e.decState.Store(decSet)
	}
}

// StaleCopy returns a copy of e marked Stale, logically expiring at
// expiresAt (unix nanoseconds): the fail-safe throttle entry.
func (e *Entry) StaleCopy(expiresAt int64) *Entry {
	c := &Entry{
		NsVer: e.NsVer, Tags: e.Tags, Negative: e.Negative, Stale: true, Codec: e.Codec,
		TagVers: e.TagVers, Payload: e.Payload, CreatedAt: e.CreatedAt, ExpiresAt: expiresAt,
		Unconfirmed: e.Unconfirmed, ContentType: e.ContentType, Plain: e.Plain,
	}
	if d := e.Decoded(); d != nil {
		c.dec = *d // c is not shared yet
		c.decState.Store(decSet)
	}
	// The copy holds the same stored value: it keeps the original's
	// entity tag, which its changed expiry must not alter.
	tag := e.QuotedETag()
	c.etag.Store(&tag)
	return c
}

// CandidateCopy returns a copy of e marked Unconfirmed: L1 keeps it as a
// fail-safe candidate (GetStale), never as an answer.
func (e *Entry) CandidateCopy() *Entry {
	c := e.StaleCopy(e.ExpiresAt)
	c.Stale, c.Unconfirmed = false, true
	return c
}

// Token is a snapshot of the counters that guard one key.
type Token struct {
	epoch  uint64
	stripe uint64
	idx    uint32
}

// Options configure a Cache.
type Options struct {
	MaxBytes uint64        // weight bound, > 0
	MaxTTL   time.Duration // cap on any entry's L1 lifetime, > 0
	// Keep is how long past its logical expiry an entry stays, for
	// fail-safe use as a stale value. Zero keeps nothing past expiry.
	Keep time.Duration
	// Now is the clock for tests. Nil means a coarse clock (1 ms
	// resolution): reading the precise time would cost more than the rest
	// of an L1 hit, and an entry that expires up to 1 ms early is harmless.
	Now func() time.Time
}

// funcClock adapts a time function to otter.Clock.
type funcClock func() time.Time

func (f funcClock) NowNano() int64                        { return f().UnixNano() }
func (f funcClock) Tick(d time.Duration) <-chan time.Time { return nil }

// Cache is the L1.
type Cache struct {
	c         *otter.Cache[string, *Entry]
	seed      maphash.Seed
	epoch     atomic.Uint64
	suspended atomic.Bool
	stripes   [stripes]atomic.Uint64
	maxTTL    time.Duration
	keep      time.Duration
	clock     otter.Clock
	coarse    *otter.CoarseClock // nil with Options.Now
	evicted   atomic.Uint64      // entries removed to keep within MaxBytes
}

// New builds an L1.
func New(o Options) (*Cache, error) {
	l := &Cache{seed: maphash.MakeSeed(), maxTTL: o.MaxTTL, keep: o.Keep}
	var clock otter.Clock
	if o.Now != nil {
		clock = funcClock(o.Now)
	} else {
		l.coarse = otter.NewCoarseClock(time.Millisecond)
		clock = l.coarse
	}
	l.clock = clock
	c, err := otter.New(&otter.Options[string, *Entry]{
		Clock:         clock,
		MaximumWeight: o.MaxBytes,
		Weigher: func(k string, e *Entry) uint32 {
			w := uint64(len(k)+len(e.Payload)+len(e.ContentType)) + entryOverhead
			for _, t := range e.Tags {
				w += uint64(len(t)) + 24
			}
			if w > 1<<32-1 {
				w = 1<<32 - 1
			}
			return uint32(w)
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *Entry]) time.Duration {
			return e.Value.ttl
		}),
		// Inline, under otter's bucket lock: an atomic add, and no
		// goroutine per event as OnDeletion would start.
		OnAtomicDeletion: func(e otter.DeletionEvent[string, *Entry]) {
			if e.Cause == otter.CauseOverflow {
				l.evicted.Add(1)
			}
		},
	})
	if err != nil {
		l.stopClock()
		return nil, err
	}
	l.c = c
	return l, nil
}

func (l *Cache) idx(key string) uint32 {
	return uint32(maphash.String(l.seed, key) & (stripes - 1))
}

// State is what L1 holds for a key, as one read sees it. Every read path
// decides what to do with an entry from its state alone (and, for Fresh
// and Throttled, from its versions), not from the entry's flags.
type State uint8

const (
	// Absent: L1 holds nothing for the key.
	Absent State = iota
	// Fresh: written in the current epoch, not past its logical expiry,
	// confirmed by L2. It answers a read when its versions are valid (a
	// negative one answers "not found").
	Fresh
	// Throttled: a fail-safe copy (Entry.Stale) within its throttle
	// window. It answers a read, as a stale value, when its versions are
	// valid or invalidated softly only.
	Throttled
	// Candidate: kept only as a fail-safe fallback, for when L2 or a
	// loader fails: past its logical expiry, written in an earlier epoch
	// (before the invalidation link was lost), or unconfirmed (loaded
	// while L2 was unreachable, or kept by CandidateCopy). It never
	// answers a read by itself.
	Candidate
)

// Answers reports whether an entry in state s may answer a read (given
// valid versions): Fresh and Throttled ones may, Candidate ones only as a
// fail-safe fallback.
func (s State) Answers() bool { return s == Fresh || s == Throttled }

// Lookup returns the entry for key and its state. Without fail-safe,
// entries leave otter at their logical expiry (or L1's MaxTTL), so expiry
// needs no check.
func (l *Cache) Lookup(key string) (*Entry, State) {
	e, ok := l.c.GetIfPresent(key)
	switch {
	case !ok:
		return nil, Absent
	case e.Unconfirmed || e.epoch != l.epoch.Load() || l.suspended.Load() || (l.keep > 0 && e.ExpiresAt != 0 && e.ExpiresAt <= l.clock.NowNano()):
		return e, Candidate
	case e.Stale:
		return e, Throttled
	}
	return e, Fresh
}

// Now returns the L1 clock's time in unix nanoseconds.
func (l *Cache) Now() int64 { return l.clock.NowNano() }

// Snapshot returns the token to pass to SetIfUnchanged.
func (l *Cache) Snapshot(key string) Token {
	i := l.idx(key)
	return Token{epoch: l.epoch.Load(), stripe: l.stripes[i].Load(), idx: i}
}

func (l *Cache) unchanged(t Token) bool {
	return l.epoch.Load() == t.epoch && l.stripes[t.idx].Load() == t.stripe
}

// SetIfUnchanged stores e unless key was invalidated (or the epoch moved)
// since t was taken. It reports whether e was kept.
func (l *Cache) SetIfUnchanged(key string, e *Entry, t Token, now int64) bool {
	if !l.unchanged(t) {
		return false
	}
	ttl := l.maxTTL
	if e.ExpiresAt != 0 {
		if rem := time.Duration(e.ExpiresAt-now) + l.keep; rem < ttl {
			ttl = rem
		}
	}
	if e.MaxAge > 0 && e.MaxAge < ttl {
		ttl = e.MaxAge
	}
	if ttl <= 0 {
		return false
	}
	e.epoch = t.epoch
	e.ttl = ttl
	l.c.Set(key, e)
	// An invalidation that bumped the stripe after the check above may
	// have deleted before our Set landed: re-check and undo.
	if !l.unchanged(t) {
		l.c.Invalidate(key)
		return false
	}
	return true
}

// SetAfterWrite stores e, the value this process has just written to L2,
// when no other write or invalidation of key happened since t was taken
// (before the L2 write). Otherwise it drops the entry: two racing writers
// can finish their L2 and L1 steps in opposite orders, and only an empty
// slot is safe then. It reports whether e was kept.
func (l *Cache) SetAfterWrite(key string, e *Entry, t Token, now int64) bool {
	if l.epoch.Load() != t.epoch || !l.stripes[t.idx].CompareAndSwap(t.stripe, t.stripe+1) {
		l.Invalidate(key)
		return false
	}
	t.stripe++
	return l.SetIfUnchanged(key, e, t, now)
}

// WriteBatch keeps, for the keys of one write whose tokens were all taken
// before it, the stripe bumps of the batch's own SetAfterWrite calls: two
// keys of the batch that share a stripe must not make each other look
// changed. The zero value is ready to use; it is not safe for concurrent
// use.
type WriteBatch struct{ own map[uint32]uint64 }

// SetAfterWrite is Cache.SetAfterWrite for one key of the batch.
func (b *WriteBatch) SetAfterWrite(l *Cache, key string, e *Entry, t Token, now int64) bool {
	t.stripe += b.own[t.idx]
	if !l.SetAfterWrite(key, e, t, now) {
		return false
	}
	if b.own == nil {
		b.own = make(map[uint32]uint64)
	}
	b.own[t.idx]++
	return true
}

// Invalidate marks key as changed and drops its entry. Readers holding an
// older token will not store what they read.
func (l *Cache) Invalidate(key string) {
	l.stripes[l.idx(key)].Add(1)
	l.c.Invalidate(key)
}

// InvalidateAll ends the freshness of every entry at once.
func (l *Cache) InvalidateAll() {
	l.epoch.Add(1)
}

// Suspend makes every entry a Candidate until Resume, without ending the
// epoch: for while the invalidation link may be holding notices back but
// may still deliver them. Resume is for when it has: entries that no
// notice removed meanwhile are Fresh again. Entries stored meanwhile are
// kept, and are Fresh after Resume too.
func (l *Cache) Suspend() { l.suspended.Store(true) }

// Resume ends Suspend.
func (l *Cache) Resume() { l.suspended.Store(false) }

// Clear drops every entry and ends freshness.
func (l *Cache) Clear() {
	l.epoch.Add(1)
	l.c.InvalidateAll()
}

// Len returns the number of entries, fresh or not.
func (l *Cache) Len() int { return l.c.EstimatedSize() }

// WeightedSize returns the bytes accounted to entries.
func (l *Cache) WeightedSize() uint64 { return l.c.WeightedSize() }

// Evictions returns the number of entries removed to keep the L1 within
// its MaxBytes (expired and invalidated entries are not counted).
func (l *Cache) Evictions() uint64 { return l.evicted.Load() }

// CleanUp runs pending maintenance, such as evictions, now.
func (l *Cache) CleanUp() { l.c.CleanUp() }

// Close stops otter's background work and the clock.
func (l *Cache) Close() {
	l.c.StopAllGoroutines()
	l.stopClock()
}

func (l *Cache) stopClock() {
	if l.coarse != nil {
		l.coarse.Stop()
	}
}
