package tiercache

import (
	"context"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/internal/envelope"
	"github.com/tiercache/tiercache/internal/l1"
	"github.com/tiercache/tiercache/internal/l2"
)

// SetOption adjusts one write.
type SetOption func(*setOptions)

type setOptions struct {
	ttl    time.Duration
	tags   []string
	skipL1 bool          // SkipL1
	skipL2 bool          // SkipL2
	l1TTL  time.Duration // WithL1TTL
	cond   *condition    // nil: unconditional
	etag   *string       // ReportETag's destination
}

// WithTTL sets the entry's lifetime. Zero or less means Options.DefaultTTL.
func WithTTL(d time.Duration) SetOption { return func(o *setOptions) { o.ttl = d } }

// SkipL1 makes one call bypass this instance's L1: Set and SetMany write
// L2 and drop the key from L1 instead of keeping the value there; Fetch
// and FetchMany neither read their keys from L1 nor keep what they read
// or load in it. Other instances are not affected.
func SkipL1() SetOption { return func(o *setOptions) { o.skipL1 = true } }

// SkipL2 makes one Set, SetMany or Fetch bypass L2: the value written or
// loaded is kept in this instance's L1 only, and Fetch reads its key from
// L1 only (a miss calls the loader). Use it for values that are cheap to
// compute and not worth a round trip, or that must not leave the process.
//
// Such a value is local: other instances neither see it nor invalidate it
// by writing or deleting the key (unless this instance has read the key
// from Redis before, which makes Redis track it for this instance), so it
// lives until its TTL, WithL1TTL or L1.MaxTTL, whichever ends first.
// InvalidateTags and Clear from any instance still remove it, since tag
// and namespace versions are read from L2 as for any write. It needs an
// L1, and cannot be combined with SkipL1, IfMatch, IfAbsent or FetchMany:
// those calls return an error matching ErrInvalidOptions.
func SkipL2() SetOption { return func(o *setOptions) { o.skipL2 = true } }

// checkSkipL2 refuses SkipL2 where it cannot apply.
func (c *Cache) checkSkipL2(so *setOptions) error {
	switch {
	case !so.skipL2:
		return nil
	case c.l1 == nil:
		return fmt.Errorf("%w: SkipL2 needs an L1 (L1.Disabled is set)", ErrInvalidOptions)
	case so.skipL1:
		return fmt.Errorf("%w: SkipL1 and SkipL2 together leave no tier", ErrInvalidOptions)
	case so.cond != nil:
		return fmt.Errorf("%w: a conditional write (IfMatch, IfAbsent) is checked in L2 and cannot skip it", ErrInvalidOptions)
	}
	return nil
}

// keepLocal stores encs in this instance's L1 only (SkipL2).
func (c *Cache) keepLocal(encs []encoded) {
	now := c.now()
	for _, e := range encs {
		c.forgetFlight(e.key)
		c.l1.SetIfUnchanged(e.key, e.entry, c.l1.Snapshot(e.key), now)
	}
}

// WithL1TTL limits how long this instance's L1 keeps the value the call
// writes or loads (at most its TTL in any case); d <= 0 means no limit.
// Other instances, which fill their L1 from their own reads, keep it for
// their usual time.
func WithL1TTL(d time.Duration) SetOption { return func(o *setOptions) { o.l1TTL = d } }

// WithTags attaches tags to the entry.
func WithTags(tags ...string) SetOption {
	return func(o *setOptions) { o.tags = append(o.tags, tags...) }
}

func applySet(opts []SetOption) setOptions {
	var so setOptions
	for _, o := range opts {
		o(&so)
	}
	return so
}

// stamp holds the versions a new entry records.
type stamp struct {
	ns   uint64
	tags []uint64 // one per tag, same order
}

// stampFor reads (creating where needed) the versions a write with tags
// must record.
func (c *Cache) stampFor(ctx context.Context, tags []string) (stamp, error) {
	ns, tv, err := c.vers.current(ctx, c, tags, createVersions)
	if err != nil && unavailable(err) && c.rec != nil {
		// The write will be queued: stamp it with the last versions seen.
		return c.vers.lastStamp(tags), nil
	}
	if err != nil {
		c.counter.errors.Add(1)
		return stamp{}, err
	}
	return stamp{ns: ns, tags: tv}, nil
}

// checkTag validates one tag.
func checkTag(t string) error {
	if t == "" || len(t) > envelope.MaxTagLen {
		return fmt.Errorf("%w: a tag must be 1 to %d bytes, got %d", ErrInvalidTag, envelope.MaxTagLen, len(t))
	}
	return nil
}

func checkTags(tags []string) error {
	if len(tags) > envelope.MaxTags {
		return fmt.Errorf("%w: %d tags, at most %d", ErrInvalidTag, len(tags), envelope.MaxTags)
	}
	for _, t := range tags {
		if err := checkTag(t); err != nil {
			return err
		}
	}
	return nil
}

// encoded is a value ready for L2 and L1.
type encoded struct {
	key    string
	bytes  []byte
	entry  *l1.Entry
	ttl    time.Duration
	skipL1 bool // the write must not keep the value in L1 (SkipL1)
}

// encode validates and encodes one value. value may be a []byte, stored
// as-is with the raw codec, or anything the key's codec can marshal.
func (c *Cache) encode(key string, value any, so setOptions, negative bool, vs stamp) (encoded, error) {
	var (
		payload []byte
		cd      codec.Codec
		err     error
		ctype   string
	)
	raw, isRaw := rawValue(value)
	switch {
	case negative:
		cd = codec.Raw()
	case isRaw:
		if cd, err = c.rawCodec(raw); err != nil {
			return encoded{}, err
		}
		payload, ctype = raw.Data, raw.ContentType
	default:
		if b, ok := value.([]byte); ok {
			cd, payload = codec.Raw(), b
		} else {
			cd = c.rules.For(key)
			if payload, err = cd.Marshal(value); err != nil {
				return encoded{}, fmt.Errorf("encode with %s: %w", cd.Name(), err)
			}
		}
	}
	if len(payload) > c.opts.MaxValueSize {
		return encoded{}, fmt.Errorf("%w: %d bytes, the maximum is %d", ErrValueTooLarge, len(payload), c.opts.MaxValueSize)
	}
	ttl := so.ttl
	if negative {
		ttl = c.opts.NegativeTTL
	} else {
		ttl = c.ttlFor(ttl)
	}
	now := c.opts.Now()
	env := envelope.Envelope{
		Codec:       cd.ID(),
		CreatedAt:   now.UnixMilli(),
		NsVersion:   vs.ns,
		Payload:     payload,
		ContentType: ctype,
	}
	if ttl > 0 {
		env.ExpiresAt = now.Add(ttl).UnixMilli()
	}
	if negative {
		env.Flags |= envelope.FlagNegative
	}
	for i, t := range so.tags {
		env.Tags = append(env.Tags, envelope.TagVersion{Tag: t, Version: vs.tags[i]})
	}
	compress := c.opts.CompressAbove
	if compress < 0 {
		compress = 0
	}
	e := &l1.Entry{Payload: payload, Codec: cd.ID(), Negative: negative, Tags: so.tags, TagVers: vs.tags, NsVer: vs.ns, ContentType: ctype}
	if !negative && !isRaw {
		if _, isBytes := value.([]byte); !isBytes {
			e.SetValue(value)
		}
	}
	if env.ExpiresAt != 0 {
		e.ExpiresAt = env.ExpiresAt * int64(time.Millisecond)
	}
	e.CreatedAt = env.CreatedAt * int64(time.Millisecond)
	b, err := envelope.Encode(nil, &env, compress)
	if err != nil {
		return encoded{}, fmt.Errorf("%w: %w", ErrInvalidTag, err)
	}
	phys := ttl
	if ttl > 0 && !negative {
		phys += c.opts.FailSafe.MaxDuration
	}
	if so.l1TTL > 0 {
		e.MaxAge = so.l1TTL
	}
	return encoded{key: key, bytes: b, entry: e, ttl: phys, skipL1: so.skipL1}, nil
}

// Set writes value under key in L2, then L1. It returns once Redis has
// acknowledged the write; the writer's next read of key is then answered
// by its L1, which still drops the value when the key changes elsewhere
// (docs/consistency.md, "Writes"). A []byte value is stored as-is, a Raw as the
// payload of its codec with its media type; anything else goes through
// the codec the key's rules pick.
//
// With IfMatch or IfAbsent the write is conditional: Redis checks the
// key's current value and writes in one WATCH/MULTI/EXEC transaction on a
// connection of the key's node (no Lua), so no other write or delete of
// the key lands in between; ErrConditionFailed when the condition does
// not hold. A conditional write is never queued: while L2 is unreachable
// it returns an error matching ErrUnavailable. Tag and namespace versions
// live on other keys (other nodes on Cluster), outside the transaction: a
// tag invalidation or Clear that lands between the check and the write
// does not stop it, but the new value records the versions read before
// the check, so the invalidation still removes it if it carries that tag
// (docs/http-api.md, "HTTP caching").
func (c *Cache) Set(ctx context.Context, key string, value any, opts ...SetOption) error {
	if err := c.check("set", key); err != nil {
		return err
	}
	so := applySet(opts)
	if err := checkTags(so.tags); err != nil {
		return keyErr("set", key, err)
	}
	if err := c.checkSkipL2(&so); err != nil {
		return keyErr("set", key, err)
	}
	vs, err := c.stampFor(ctx, so.tags)
	if err != nil {
		return keyErr("set", key, err)
	}
	enc, err := c.encode(key, value, so, false, vs)
	if err != nil {
		return keyErr("set", key, err)
	}
	switch {
	case so.cond != nil:
		err = c.writeIf(ctx, key, so.cond, &enc)
	case so.skipL2:
		c.keepLocal([]encoded{enc})
	default:
		err = c.write(ctx, []encoded{enc}, true)
	}
	if err == nil && so.etag != nil {
		*so.etag = enc.entry.ETag()
	}
	return keyErr("set", key, err)
}

// write stores encoded values in L2 and then updates L1. With queue, a
// failure because L2 is unreachable sends the values to the recovery
// queue (the error then matches ErrQueued).
//
// The writer's L1 keeps what it wrote (read-your-own-writes). With Redis,
// an L1 copy must be tracked by the server, or a later change made
// elsewhere would not reach it: the write reads each key back in the
// same round trip (l2.Tracker), and keeps the copy only when the key was
// tracked with the value written.
func (c *Cache) write(ctx context.Context, encs []encoded, queue bool) error {
	var toks []l1.Token
	if c.l1 != nil {
		toks = make([]l1.Token, len(encs))
		for i, e := range encs {
			toks[i] = c.l1.Snapshot(e.key)
		}
	}
	var tracked []bool // with c.tracked: which keys may stay in L1
	send := func() (err error) {
		if len(encs) == 1 && (c.l1 == nil || !c.tracked) {
			return c.store.Set(ctx, c.prefix+encs[0].key, encs[0].bytes, encs[0].ttl)
		}
		items := make([]l2.Item, len(encs))
		for i, e := range encs {
			items[i] = l2.Item{Key: c.prefix + e.key, Value: e.bytes, TTL: e.ttl}
		}
		if c.l1 != nil && c.tracked {
			tracked, err = c.guard.MSetTracked(ctx, items)
			return err
		}
		return c.store.MSet(ctx, items)
	}
	after := func(err error) {
		for _, e := range encs {
			c.forgetFlight(e.key)
		}
		if c.l1 == nil {
			return
		}
		now := c.now()
		var batch l1.WriteBatch
		for i, e := range encs {
			if err != nil || e.skipL1 || (c.tracked && !tracked[i]) {
				c.l1.Invalidate(e.key)
				continue
			}
			batch.SetAfterWrite(c.l1, e.key, e.entry, toks[i], now)
		}
	}
	var ops func() []recOp
	if queue {
		ops = func() []recOp {
			out := make([]recOp, len(encs))
			for i, e := range encs {
				out[i] = recOp{kind: opSet, key: c.prefix + e.key, value: e.bytes, ttl: e.ttl}
			}
			return out
		}
	}
	// An older operation on one of these keys, or an invalidation of
	// their namespace or tags, waiting in the recovery queue goes first,
	// so that it cannot land after this write and remove it.
	behind := c.rec != nil && (c.rec.queuedWrites(encs, c.prefix) || c.vers.pendingIn(encs))
	return c.sendOrQueue(behind, send, after, ops)
}

// Delete removes keys from both tiers. Missing keys are not an error.
func (c *Cache) Delete(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		if err := c.check("delete", k); err != nil {
			return err
		}
		full[i] = c.prefix + k
	}
	err := c.sendOrQueue(c.rec != nil && c.rec.queuedAny(full),
		func() error { return c.store.Del(ctx, full...) },
		func(error) {
			for _, k := range keys {
				if c.l1 != nil {
					c.l1.Invalidate(k)
				}
				c.forgetFlight(k)
			}
		},
		func() []recOp {
			ops := make([]recOp, len(full))
			for i, k := range full {
				ops[i] = recOp{kind: opDel, key: k}
			}
			return ops
		})
	if err != nil {
		if len(keys) > 1 {
			return errorf("tiercache: delete (%d keys): %w", len(keys), err)
		}
		return keyErr("delete", keys[0], err)
	}
	if c.rec != nil {
		c.rec.remember(opDel, full, c.opts.Now())
	}
	c.obs.rec.RecordInvalidations("delete", len(keys))
	return nil
}
