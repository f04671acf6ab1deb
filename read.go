package tiercache

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"
	"unicode/utf8"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/internal/envelope"
	"github.com/tiercache/tiercache/internal/l1"
	"github.com/tiercache/tiercache/internal/l2"
)

// Source tells where a read was answered from.
type Source uint8

// Sources of a Result.
const (
	SourceNone   Source = iota // not found
	SourceL1                   // the in-process tier
	SourceL2                   // the shared tier
	SourceLoader               // a loader call made for this read
	SourceStale                // a fail-safe stale value (see Options.FailSafe)
)

// String returns "miss", "hit-l1", "hit-l2", "loader" or "stale".
func (s Source) String() string {
	switch s {
	case SourceL1:
		return "hit-l1"
	case SourceL2:
		return "hit-l2"
	case SourceLoader:
		return "loader"
	case SourceStale:
		return "stale"
	}
	return "miss"
}

// Result describes how a read was answered.
type Result struct {
	Source    Source    // SourceStale when a fail-safe stale value was served
	Stale     bool      // the value is stale: past its TTL or unconfirmed
	Codec     string    // the codec of the stored value
	CreatedAt time.Time // when the value was written
	ExpiresAt time.Time // its logical expiry; zero for none
	// ContentType is the media type the value was stored with (see
	// Raw.ContentType); empty for none.
	ContentType string
	// ETag identifies the stored value: 16 hex digits, without quotes.
	// It changes whenever the value is written again (every write records
	// a new creation time), and every instance computes the same ETag for
	// the same stored value. Pass it to IfMatch or DeleteIfMatch for a
	// write that applies only if the value is still this one.
	ETag string
	// Tags are the tags the value was written with (WithTags), shared
	// with the cache: do not modify them.
	Tags []string

	quotedETag string // ETag in double quotes, kept with the entry
}

// QuotedETag returns ETag in double quotes, as an HTTP ETag header
// carries it, or "" when ETag is empty. For a Result from Lookup it costs
// no allocation.
func (r Result) QuotedETag() string {
	switch {
	case r.quotedETag != "":
		return r.quotedETag
	case r.ETag == "":
		return ""
	}
	return `"` + r.ETag + `"`
}

// Raw is a stored payload without decoding. Pass a *Raw to Get or Lookup
// to receive the payload as it is stored, as the HTTP service does; pass
// a Raw (or *Raw) to Set, SetMany or SetItems to store Data as it is, as
// the payload of the codec named by Codec, with ContentType beside it.
type Raw struct {
	// Codec names the codec of Data: "raw" (or empty), "msgpack", "json",
	// or one in Options.Codecs. When writing, Data must be valid for it:
	// JSON must parse, MessagePack must be exactly one object (other
	// codecs' payloads are not checked). Values stored with the json or
	// msgpack codec can be read into Go types with Get.
	Codec string
	// ContentType is the media type stored with the value, such as
	// "application/json; charset=utf-8" (at most 255 bytes, valid for
	// mime.ParseMediaType); empty for none. tiercache serve returns it as
	// the Content-Type of GET.
	ContentType string
	Data        []byte
}

// Get reads key into dst, which must be a non-nil pointer (or a *Raw). On
// a miss it returns an error matching ErrNotFound.
//
// A []byte value read into a *[]byte, or any value into a *Raw, is copied
// into the slice dst holds, reusing its capacity: an L1 hit into a
// destination kept across calls allocates nothing. The variable dst points
// to escapes to the heap, since Get hands it to codecs, so a variable
// declared for each call costs one allocation of its own (see
// docs/benchmarks.md, BenchmarkCache_GetBytes).
func (c *Cache) Get(ctx context.Context, key string, dst any) error {
	_, _, err := c.get(ctx, key, dst)
	return err
}

// Lookup is Get that also reports where the value came from.
func (c *Cache) Lookup(ctx context.Context, key string, dst any) (Result, error) {
	e, src, err := c.get(ctx, key, dst)
	if err != nil {
		return Result{}, err
	}
	return c.result(e, src), nil
}

func (c *Cache) get(ctx context.Context, key string, dst any) (*l1.Entry, Source, error) {
	if err := c.check("get", key); err != nil {
		return nil, SourceNone, err
	}
	if dst == nil {
		return nil, SourceNone, keyErr("get", key, ErrInvalidDestination)
	}
	if c.opts.OnAccess != nil {
		c.opts.OnAccess(key)
	}
	t0 := c.obs.start()
	e, src, stale, err := c.entry(ctx, key)
	if err != nil && stale != nil && !errors.Is(err, ErrNotFound) {
		// L2 is failing: fail-safe serves the stale value, flagged.
		e, src, err = stale, SourceStale, nil
	}
	if err == nil && e.Negative {
		err = ErrNotFound
	}
	if err == nil {
		err = c.assign(e, dst)
	}
	c.obs.done(OpGet, src, err, t0)
	if err != nil {
		return nil, SourceNone, keyErr("get", key, err)
	}
	return e, src, nil
}

func (c *Cache) result(e *l1.Entry, src Source) Result {
	if e.Stale {
		src = SourceStale
	}
	q := e.QuotedETag()
	r := Result{Source: src, Stale: src == SourceStale, ContentType: e.ContentType, ETag: q[1 : len(q)-1], Tags: e.Tags, quotedETag: q}
	if cd, err := c.reg.ByID(e.Codec); err == nil {
		r.Codec = cd.Name()
	}
	if e.ExpiresAt != 0 {
		r.ExpiresAt = time.Unix(0, e.ExpiresAt)
	}
	if e.CreatedAt != 0 {
		r.CreatedAt = time.Unix(0, e.CreatedAt)
	}
	return r
}

// entry returns the fresh entry for key from L1 or L2; it may be a
// negative one (e.Negative), which callers report as ErrNotFound. On a miss
// or an L2 failure it also returns a stale candidate for fail-safe use,
// when one exists: an expired (or, after a lost link, unconfirmed) entry
// that no known invalidation removed.
func (c *Cache) entry(ctx context.Context, key string) (e *l1.Entry, src Source, stale *l1.Entry, err error) {
	return c.entryFrom(ctx, key, c.l1)
}

// entryFrom is entry with L1 given: nil reads L2 alone (SkipL1).
func (c *Cache) entryFrom(ctx context.Context, key string, l1c *l1.Cache) (e *l1.Entry, src Source, stale *l1.Entry, err error) {
	if c.queued(key) {
		return nil, SourceNone, nil, ErrNotFound
	}
	rb := c.readBudget(ctx) // L2 calls run under the read's budget
	defer rb.release()
	if l1c != nil {
		e, src, err := c.fromL1(&rb, l1c, key)
		if err != nil {
			return nil, SourceNone, c.staleIn(l1c, key), err
		}
		if src != SourceNone {
			return e, src, nil, nil
		}
	}
	now := c.now()
	var tok l1.Token
	if l1c != nil {
		tok = l1c.Snapshot(key)
	}
	b, err := c.store.Get(rb.get(), c.prefix+key)
	if errors.Is(err, l2.ErrNotFound) {
		return nil, SourceNone, nil, ErrNotFound
	}
	if err != nil {
		c.counter.errors.Add(1)
		return nil, SourceNone, c.staleIn(l1c, key), err
	}
	e, expired, err := c.decodeEntry(key, b, now)
	if err != nil {
		return nil, SourceNone, nil, err
	}
	vd, err := c.validity(rb.get(), e)
	if err != nil {
		c.counter.errors.Add(1)
		return nil, SourceNone, c.staleIn(l1c, key), err
	}
	if vd == validNo {
		return nil, SourceNone, nil, ErrNotFound
	}
	if expired || vd == validSoft {
		// Expired or invalidated softly: a miss, and a fail-safe
		// candidate. L1 keeps it too, for when L2 becomes unreachable:
		// L1 never answers it as fresh (past its expiry, or carrying a
		// softly invalidated version).
		if c.opts.FailSafe.MaxDuration > 0 && !e.Negative {
			if l1c != nil {
				l1c.SetIfUnchanged(key, e.CandidateCopy(), tok, now)
			}
			return nil, SourceNone, e, ErrNotFound
		}
		return nil, SourceNone, nil, ErrNotFound
	}
	if l1c != nil {
		l1c.SetIfUnchanged(key, e, tok, now)
	}
	return e, SourceL2, nil, nil
}

// staleL1 returns L1's entry for key as a fail-safe candidate: within the
// fail-safe window and carrying no version known to be invalid.
func (c *Cache) staleL1(key string) *l1.Entry { return c.staleIn(c.l1, key) }

// staleIn is staleL1 in l1c; nil finds nothing.
func (c *Cache) staleIn(l1c *l1.Cache, key string) *l1.Entry {
	if l1c == nil || c.opts.FailSafe.MaxDuration <= 0 {
		return nil
	}
	e, st := l1c.Lookup(key)
	if st == l1.Absent || e.Negative {
		return nil
	}
	if e.ExpiresAt != 0 && e.ExpiresAt+int64(c.opts.FailSafe.MaxDuration) <= c.now() {
		return nil
	}
	if c.vers.quickValidity(e) == validNo {
		return nil
	}
	return e
}

// fromL1 reads key's entry in l1c and classifies it, the one place that
// decides what an L1 entry answers: SourceL1 for a hit, SourceStale for a
// fail-safe copy within its throttle, SourceNone when it answers nothing
// (absent, a fail-safe candidate only, or invalidated). Versions not
// cached are read from L2 under rb; a failure to read them is counted and
// returned.
func (c *Cache) fromL1(rb *readBudget, l1c *l1.Cache, key string) (*l1.Entry, Source, error) {
	e, st := l1c.Lookup(key)
	if !st.Answers() {
		return nil, SourceNone, nil
	}
	vd := c.vers.quickValidity(e)
	if vd == validUnknown {
		var err error
		if vd, err = c.validityFrom(rb.get(), e, cachedVersions); err != nil {
			c.counter.errors.Add(1)
			return nil, SourceNone, err
		}
	}
	if src := l1Source(st, vd); src != SourceNone {
		return e, src, nil
	}
	return nil, SourceNone, nil
}

// l1Source is what an L1 entry in state st, whose versions have validity
// vd, answers: a Fresh valid one is an L1 hit; a Throttled one is a stale
// answer unless hard invalidated (being stale already, a soft invalidation
// does not stop it); nothing else answers.
func l1Source(st l1.State, vd validity) Source {
	switch {
	case st == l1.Fresh && vd == validYes:
		return SourceL1
	case st == l1.Throttled && (vd == validYes || vd == validSoft):
		return SourceStale
	}
	return SourceNone
}

// decodeEntry turns stored bytes into an entry. A corrupt or expired value
// is a miss; a corrupt one is also counted and logged.
func (c *Cache) decodeEntry(key string, b []byte, now int64) (e *l1.Entry, expired bool, err error) {
	return c.decodeEntryOf(key, b, now, true)
}

// decodeEntryOf is decodeEntry; with count false an undecodable value is
// neither counted nor logged (a re-read of a value already counted).
func (c *Cache) decodeEntryOf(key string, b []byte, now int64, count bool) (e *l1.Entry, expired bool, err error) {
	if !envelope.HasMagic(b) {
		return c.plainEntry(key, b, count)
	}
	env, err := envelope.Decode(b, c.opts.MaxValueSize)
	if err != nil {
		if !count {
			return nil, false, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		c.counter.corrupt.Add(1)
		c.logger.Warn("tiercache: corrupt value treated as a miss", "namespace", c.opts.Namespace, "key", truncKey(key), "err", err)
		return nil, false, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	exp := env.ExpiresAt * int64(time.Millisecond)
	expired = exp != 0 && exp <= now
	if _, err := c.reg.ByID(env.Codec); err != nil {
		if !count {
			return nil, false, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		c.counter.corrupt.Add(1)
		c.logger.Warn("tiercache: value with an unknown codec treated as a miss", "namespace", c.opts.Namespace, "key", truncKey(key), "codec", env.Codec)
		return nil, false, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	e = &l1.Entry{
		Payload:     env.Payload,
		Codec:       env.Codec,
		Negative:    env.Flags&envelope.FlagNegative != 0,
		ExpiresAt:   exp,
		CreatedAt:   env.CreatedAt * int64(time.Millisecond),
		NsVer:       env.NsVersion,
		ContentType: env.ContentType,
	}
	for _, t := range env.Tags {
		e.Tags = append(e.Tags, t.Tag)
		e.TagVers = append(e.TagVers, t.Version)
	}
	return e, expired, nil
}

// plainEntry is decodeEntry for bytes without an envelope: a raw value
// with Options.ReadPlainValues, ErrNotTiercache otherwise. Those reads are
// counted as corrupt but logged at most once a minute, since a namespace
// shared with another program may hold many.
func (c *Cache) plainEntry(key string, b []byte, count bool) (*l1.Entry, bool, error) {
	if c.opts.ReadPlainValues {
		if len(b) > c.opts.MaxValueSize {
			if count {
				c.counter.corrupt.Add(1)
			}
			return nil, false, fmt.Errorf("%w: %w: a plain value of %d bytes, over the limit of %d", ErrNotFound, ErrValueTooLarge, len(b), c.opts.MaxValueSize)
		}
		return &l1.Entry{Payload: b, Codec: codec.IDRaw, Plain: true}, false, nil
	}
	if !count {
		return nil, false, notTiercacheError{}
	}
	c.counter.corrupt.Add(1)
	now := time.Now().UnixNano()
	if last := c.foreignLogged.Load(); now-last >= int64(time.Minute) && c.foreignLogged.CompareAndSwap(last, now) {
		c.logger.Warn("tiercache: a key holds a value tiercache did not write; reads of it fail with ErrNotTiercache (logged at most once a minute; Options.ReadPlainValues reads such values as raw bytes)",
			"namespace", c.opts.Namespace, "key", truncKey(key), "bytes", len(b))
	}
	return nil, false, notTiercacheError{}
}

// truncKey shortens a key for messages, on a UTF-8 boundary.
func truncKey(k string) string {
	if len(k) <= 64 {
		return k
	}
	n := 64
	for n > 0 && !utf8.RuneStart(k[n]) {
		n--
	}
	return k[:n] + "..."
}

// MaxValueSize returns the largest payload, in bytes, the cache accepts.
func (c *Cache) MaxValueSize() int { return c.opts.MaxValueSize }

// assign copies an entry's value into dst.
func (c *Cache) assign(e *l1.Entry, dst any) error {
	switch d := dst.(type) {
	case *Raw:
		cd, _ := c.reg.ByID(e.Codec)
		d.Codec = cd.Name()
		d.ContentType = e.ContentType
		d.Data = append(d.Data[:0], e.Payload...)
		return nil
	case *[]byte:
		if e.Codec == codec.IDRaw {
			*d = append((*d)[:0], e.Payload...)
			return nil
		}
	case *string:
		if e.Codec == codec.IDRaw {
			*d = string(e.Payload)
			return nil
		}
	}
	if d := e.Decoded(); d != nil {
		if reflect.TypeOf(dst) == d.PtrType {
			// The common case: dst is a *T and the entry holds a T.
			if p := reflect.ValueOf(dst); !p.IsNil() {
				p.Elem().Set(d.RV)
				return nil
			}
		}
		dv := reflect.ValueOf(dst)
		if dv.Kind() != reflect.Pointer || dv.IsNil() {
			return fmt.Errorf("%w: %T is not a non-nil pointer", ErrInvalidDestination, dst)
		}
		if d.RV.Type().AssignableTo(dv.Elem().Type()) {
			dv.Elem().Set(d.RV)
			return nil
		}
	}
	return c.decodeInto(e, dst)
}

// decodeInto unmarshals the payload into dst. A raw payload is decoded with
// the codec the key's rules pick, so that bytes written through the HTTP
// API can be read into Go types.
func (c *Cache) decodeInto(e *l1.Entry, dst any) error {
	cd, err := c.reg.ByID(e.Codec)
	if err != nil {
		return err
	}
	if err := cd.Unmarshal(e.Payload, dst); err != nil {
		return fmt.Errorf("decode %s value into %T: %w", cd.Name(), dst, err)
	}
	return nil
}
