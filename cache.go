package tiercache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tiercache/tiercache/codec"
	"github.com/tiercache/tiercache/internal/envelope"
	"github.com/tiercache/tiercache/internal/l1"
	"github.com/tiercache/tiercache/internal/l2"
	"github.com/tiercache/tiercache/internal/memstore"
)

// Cache is a two-tier cache: an in-process L1 in front of a shared L2.
// It is safe for concurrent use. Create it with New and release it with
// Close.
//
// Values read from L1 are shared between callers: treat what Get, Fetch
// and FetchMany return as read-only.
type Cache struct {
	opts   Options
	prefix string // "<namespace>:"
	store  l2.Store
	// tracked is true when the L2 reports invalidations for keys this
	// process has read. Then an entry may only enter L1 through a read
	// that registered it with the server: a plain read, or the read-back
	// of a tracked write (see write).
	tracked bool
	l1      *l1.Cache // nil when disabled
	vers    *versions
	mem     *memstore.Store  // the in-memory L2, when there is no Redis
	guard   *guarded         // store, wrapped: timeouts, retries, breaker
	budgets *sharedDeadlines // deadlines of reads (ReadTimeout); nil without
	rec     *recovery        // nil when disabled
	eager   sync.Map         // keys with a background refresh running
	reg     *codec.Registry
	rules   *codec.Rules
	flights flights    // loads in progress, one per key (flight.go)
	waiters keyWaiters // Fetches waiting for another instance's load
	// lockPoll is the first and the longest step of a lock waiter's
	// polling; zero means lockPollFirst and lockPollMax (tests lengthen
	// it to see the wake-up alone).
	lockPoll [2]time.Duration
	noWake   bool // benchmarks: waiters only poll, as a baseline
	live     bool // the liveness probe runs (liveness.go)
	logger   *slog.Logger
	obs      *observer // metrics, latency and tracing
	fleet    *fleet    // nil without Options.Fleet (fleet.go)
	canary   *canary   // nil without Options.Canary (canary.go)

	closed atomic.Bool
	// foreignLogged is when a read of a value tiercache did not write
	// was last logged, in unix nanoseconds.
	foreignLogged atomic.Int64
	ctx           context.Context // cancelled by Close; background work runs on it
	cancel        context.CancelFunc
	bg            sync.WaitGroup
	counter       counters
}

// New builds a Cache from opts. Zero fields take the defaults documented on
// Options. It connects to Redis when one is configured.
func New(opts Options) (*Cache, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	reg, err := codec.NewRegistry(opts.Codecs...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	rules, err := codec.CompileRules(reg, opts.CodecRules, opts.Codec)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	c := &Cache{
		opts:   opts,
		prefix: opts.Namespace + ":",
		reg:    reg,
		rules:  rules,
		logger: opts.Logger,
		vers:   newVersions(opts.Namespace),
		obs:    newObserver(opts),
	}
	c.budgets = newReadBudgets(opts.ReadTimeout)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if !opts.L1.Disabled {
		l1o := l1.Options{MaxBytes: uint64(opts.L1.MaxBytes), MaxTTL: opts.L1.MaxTTL, Keep: opts.FailSafe.MaxDuration}
		if opts.nowSet {
			l1o.Now = opts.Now
		}
		c.l1, err = l1.New(l1o)
		if err != nil {
			c.cancel()
			return nil, fmt.Errorf("%w: L1: %w", ErrInvalidOptions, err)
		}
	}
	if opts.RecoveryQueueSize > 0 {
		// Before the store: its invalidations, which may arrive before
		// New returns, replay recent operations into the queue.
		c.rec = newRecovery(opts.RecoveryQueueSize, max(opts.RecoveryReplayWindow, 0))
		if err := c.startJournal(); err != nil {
			c.closeL1()
			c.cancel()
			return nil, err
		}
	}
	if opts.Redis.enabled() {
		c.store, err = newRedisStore(opts.Redis, opts.Logger, c.onInvalidation, c.trackOnly())
		if err != nil {
			c.closeJournal()
			c.closeL1()
			c.cancel()
			return nil, err
		}
		c.tracked = true
	} else {
		c.mem = memstore.New(0, opts.Now)
		c.store = c.mem.View(c.onInvalidation)
	}
	c.guard = newGuarded(c.store, opts, func(s BreakerState) { c.obs.rec.RecordBreaker(s) })
	c.guard.obs = c.obs
	c.store = c.guard
	if c.rec != nil {
		c.guard.onOK = c.rec.poke
		c.bg.Add(1)
		go c.replayLoop()
	}
	if p, ok := c.guard.s.(l2.Prober); ok && c.tracked && opts.LivenessInterval >= 0 {
		c.live = true
		c.bg.Add(1)
		go c.livenessLoop(p)
	}
	c.startFleet()
	c.obs.rec.Attach(c)
	return c, nil
}

// Must is New that panics on error, for package-level initialisation in
// programs that cannot run without their cache.
func Must(opts Options) *Cache {
	c, err := New(opts)
	if err != nil {
		panic(err)
	}
	return c
}

// Close stops background work, waits for it, and releases the L2
// connection. Operations after Close return ErrClosed. Close is idempotent.
func (c *Cache) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.cancel()
	c.bg.Wait()
	err := c.store.Close()
	c.closeL1()
	return errors.Join(err, c.closeJournal())
}

func (c *Cache) closeL1() {
	if c.l1 != nil {
		c.l1.Close()
	}
}

// Namespace returns the namespace that prefixes this cache's keys.
func (c *Cache) Namespace() string { return c.opts.Namespace }

// onInvalidation runs on the L2's read goroutine: keep it short.
func (c *Cache) onInvalidation(inv l2.Invalidation) {
	if inv.All {
		c.endFreshness()
		c.replayRecent()
		return
	}
	for _, k := range inv.Keys {
		switch {
		case len(k) > len(c.prefix) && k[:len(c.prefix)] == c.prefix:
			if c.l1 != nil {
				c.l1.Invalidate(k[len(c.prefix):])
			}
			c.forgetFlight(k[len(c.prefix):])
			if !c.noWake && c.waiters.wake(k[len(c.prefix):]) > 0 {
				c.counter.lockWakeups.Add(1)
			}
		case c.vers.invalidate(k):
		default:
			continue
		}
		c.counter.invalidations.Add(1)
	}
}

// check validates the cache state and a key.
func (c *Cache) check(op, key string) error {
	if c.closed.Load() {
		return keyErr(op, key, ErrClosed)
	}
	if key == "" {
		return keyErr(op, key, fmt.Errorf("%w: empty", ErrInvalidKey))
	}
	if len(key) > c.opts.MaxKeyLength {
		return keyErr(op, key, fmt.Errorf("%w: %d bytes, the maximum is %d", ErrInvalidKey, len(key), c.opts.MaxKeyLength))
	}
	return nil
}

func (c *Cache) now() int64 { return c.opts.Now().UnixNano() }

// ttlFor applies the default and the jitter.
func (c *Cache) ttlFor(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		ttl = c.opts.DefaultTTL
	}
	if j := c.opts.TTLJitter; j > 0 && ttl > 0 {
		ttl -= time.Duration(rand.Float64() * j * float64(ttl))
	}
	return ttl
}

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
		c.counter.staleServed.Add(1)
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
	r := Result{Source: src, Stale: src == SourceStale, ContentType: e.ContentType, ETag: q[1 : len(q)-1], quotedETag: q}
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
		c.counter.miss.Add(1)
		return nil, SourceNone, nil, ErrNotFound
	}
	rb := c.readBudget(ctx) // L2 calls run under the read's budget
	defer rb.release()
	if l1c != nil {
		if e, ok := l1c.Get(key); ok && !e.Unconfirmed {
			vd := c.vers.quickValidity(e)
			if vd == validUnknown {
				if vd, err = c.validity(rb.get(), e); err != nil {
					c.counter.errors.Add(1)
					return nil, SourceNone, c.staleIn(l1c, key), err
				}
			}
			if usable(e, vd) {
				if e.Stale {
					// A fail-safe copy within its throttle: an answer,
					// but a stale one, and counted as one.
					c.counter.staleServed.Add(1)
					return e, SourceStale, nil, nil
				}
				c.counter.hitL1.Add(1)
				return e, SourceL1, nil, nil
			}
		}
	}
	now := c.now()
	var tok l1.Token
	if l1c != nil {
		tok = l1c.Snapshot(key)
	}
	b, err := c.store.Get(rb.get(), c.prefix+key)
	if errors.Is(err, l2.ErrNotFound) {
		c.counter.miss.Add(1)
		return nil, SourceNone, nil, ErrNotFound
	}
	if err != nil {
		c.counter.errors.Add(1)
		return nil, SourceNone, c.staleIn(l1c, key), err
	}
	e, expired, err := c.decodeEntry(key, b, now)
	if err != nil {
		c.counter.miss.Add(1) // and counted as corrupt by decodeEntry
		return nil, SourceNone, nil, err
	}
	vd, err := c.validity(rb.get(), e)
	if err != nil {
		c.counter.errors.Add(1)
		return nil, SourceNone, c.staleIn(l1c, key), err
	}
	if vd == validNo {
		c.counter.miss.Add(1)
		return nil, SourceNone, nil, ErrNotFound
	}
	if expired || vd == validSoft {
		// Expired or invalidated softly: a miss, and a fail-safe
		// candidate. L1 keeps it too, for when L2 becomes unreachable:
		// L1 never answers it as fresh (past its expiry, or carrying a
		// softly invalidated version).
		c.counter.miss.Add(1)
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
	c.counter.hitL2.Add(1)
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
	e, ok := l1c.GetStale(key)
	if !ok || e.Negative {
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

// usable reports whether an L1 entry of validity vd answers a read: a
// valid one does, and so does a fail-safe copy within its throttle
// (e.Stale) that was invalidated softly only, being stale already.
func usable(e *l1.Entry, vd validity) bool {
	return vd == validYes || (vd == validSoft && e.Stale)
}

// decodeEntry turns stored bytes into an entry. A corrupt or expired value
// is a miss; a corrupt one is also counted and logged.
func (c *Cache) decodeEntry(key string, b []byte, now int64) (e *l1.Entry, expired bool, err error) {
	if !envelope.HasMagic(b) {
		return c.plainEntry(key, b)
	}
	env, err := envelope.Decode(b, c.opts.MaxValueSize)
	if err != nil {
		c.counter.corrupt.Add(1)
		c.logger.Warn("tiercache: corrupt value treated as a miss", "namespace", c.opts.Namespace, "key", truncKey(key), "err", err)
		return nil, false, fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	exp := env.ExpiresAt * int64(time.Millisecond)
	expired = exp != 0 && exp <= now
	if _, err := c.reg.ByID(env.Codec); err != nil {
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
func (c *Cache) plainEntry(key string, b []byte) (*l1.Entry, bool, error) {
	if c.opts.ReadPlainValues {
		if len(b) > c.opts.MaxValueSize {
			c.counter.corrupt.Add(1)
			return nil, false, fmt.Errorf("%w: %w: a plain value of %d bytes, over the limit of %d", ErrNotFound, ErrValueTooLarge, len(b), c.opts.MaxValueSize)
		}
		return &l1.Entry{Payload: b, Codec: codec.IDRaw, Plain: true}, false, nil
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
	ns, tv, err := c.vers.current(ctx, c, tags, true)
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
	var err error
	var tracked []bool // with c.tracked: which keys may stay in L1
	if c.rec != nil && (c.rec.anyPending(encs, c.prefix) || c.vers.anyPending(encs)) {
		// An older operation on one of these keys, or an invalidation of
		// their namespace or tags, waits in the recovery queue: go behind
		// it, so that it cannot land after this write and remove it.
		err = fmt.Errorf("%w: an earlier operation on the key is queued", ErrUnavailable)
	} else if len(encs) == 1 && (c.l1 == nil || !c.tracked) {
		err = c.store.Set(ctx, c.prefix+encs[0].key, encs[0].bytes, encs[0].ttl)
	} else {
		items := make([]l2.Item, len(encs))
		for i, e := range encs {
			items[i] = l2.Item{Key: c.prefix + e.key, Value: e.bytes, TTL: e.ttl}
		}
		if c.l1 != nil && c.tracked {
			tracked, err = c.guard.MSetTracked(ctx, items)
		} else {
			err = c.store.MSet(ctx, items)
		}
	}
	for _, e := range encs {
		c.forgetFlight(e.key)
	}
	if c.l1 != nil {
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
	if err != nil {
		c.counter.errors.Add(1)
		if queue && unavailable(err) {
			ops := make([]recOp, len(encs))
			for i, e := range encs {
				ops[i] = recOp{kind: opSet, key: c.prefix + e.key, value: e.bytes, ttl: e.ttl}
			}
			err = c.queueOps(err, ops)
		}
	}
	return err
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
	var err error
	if c.rec != nil && c.rec.pendingAny(full) {
		err = fmt.Errorf("%w: an earlier operation on the key is queued", ErrUnavailable)
	} else {
		err = c.store.Del(ctx, full...)
	}
	for _, k := range keys {
		if c.l1 != nil {
			c.l1.Invalidate(k)
		}
		c.forgetFlight(k)
	}
	if err != nil {
		c.counter.errors.Add(1)
		if unavailable(err) {
			ops := make([]recOp, len(full))
			for i, k := range full {
				ops[i] = recOp{kind: opDel, key: k}
			}
			err = c.queueOps(err, ops)
		}
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

// counters are the cache's own statistics.
type counters struct {
	hitL2, miss, errors, corrupt    atomic.Uint64
	loads, loadErrors               atomic.Uint64
	invalidations, invalidationsAll atomic.Uint64
	linkSuspects                    atomic.Uint64
	tagInvalidations                atomic.Uint64
	staleServed, replayFailed       atomic.Uint64
	eagerRefreshes, lockWaits       atomic.Uint64
	lockWakeups                     atomic.Uint64 // waits ended by the key's invalidation

	hitL1 stripedCounter // on the L1-hit path: striped, not one contended word
}

// Counters is a snapshot of the cache's counters.
type Counters struct {
	HitsL1        uint64 // reads answered by L1
	HitsL2        uint64 // reads answered by L2
	Misses        uint64 // reads that found nothing
	Errors        uint64 // L2 operations that failed
	Corrupt       uint64 // stored values that could not be decoded (each also a miss)
	Loads         uint64 // loader calls
	LoadErrors    uint64 // loader calls that failed (ErrNotFound excluded)
	Invalidations uint64 // keys invalidated by Redis
	LinkResets    uint64 // times every L1 entry lost freshness at once
	LinkSuspects  uint64 // of those, times L2 did not answer the liveness probe in time
	TagBumps      uint64 // tag and namespace versions this instance incremented
	StaleServed   uint64 // fail-safe stale values served
	EagerRefresh  uint64 // background refreshes started by eager refresh
	LockWaits     uint64 // Fetches that waited for another instance's load
	Breaker       BreakerState
	// BreakerOpenFor is how long the breaker has been open (or half-open
	// between probes) since it last opened; 0 while it is closed.
	BreakerOpenFor time.Duration
	// BreakerRefused counts L2 calls the breaker refused while open,
	// each failed at once with ErrCircuitOpen.
	BreakerRefused uint64
	QueueLength    int    // operations waiting in the recovery queue
	QueueOverflow  uint64 // operations refused because the queue was full
	Replayed       uint64 // queued operations applied
	ReplayFailed   uint64 // queued operations L2 refused (logged)
	L1Entries      int    // entries in L1, fresh or not
	L1Bytes        uint64 // bytes accounted to L1 entries
	L1Evictions    uint64 // L1 entries removed to stay within L1.MaxBytes

	// Requests counts reads by operation and result: one per call, and
	// one per distinct key for GetMany and FetchMany.
	Requests Requests
}

// Counters returns the current counters.
func (c *Cache) Counters() Counters {
	s := Counters{
		HitsL1:         c.counter.hitL1.Load(),
		HitsL2:         c.counter.hitL2.Load(),
		Misses:         c.counter.miss.Load(),
		Errors:         c.counter.errors.Load(),
		Corrupt:        c.counter.corrupt.Load(),
		Loads:          c.counter.loads.Load(),
		LoadErrors:     c.counter.loadErrors.Load(),
		Invalidations:  c.counter.invalidations.Load(),
		LinkResets:     c.counter.invalidationsAll.Load(),
		LinkSuspects:   c.counter.linkSuspects.Load(),
		TagBumps:       c.counter.tagInvalidations.Load(),
		StaleServed:    c.counter.staleServed.Load(),
		EagerRefresh:   c.counter.eagerRefreshes.Load(),
		LockWaits:      c.counter.lockWaits.Load(),
		Breaker:        c.guard.state(),
		BreakerOpenFor: c.guard.openFor(time.Now()),
		BreakerRefused: c.guard.refused.Load(),
		ReplayFailed:   c.counter.replayFailed.Load(),
		Requests:       c.obs.reqs.snapshot(),
	}
	if c.l1 != nil {
		s.L1Entries = c.l1.Len()
		s.L1Bytes = c.l1.WeightedSize()
		s.L1Evictions = c.l1.Evictions()
	}
	if c.rec != nil {
		s.QueueLength = int(c.rec.length.Load())
		s.QueueOverflow = c.rec.overflow.Load()
		s.Replayed = c.rec.replayed.Load()
	}
	return s
}

// BreakerState returns the state of the circuit breaker around L2.
func (c *Cache) BreakerState() BreakerState { return c.guard.state() }

// QueueLength returns the number of operations waiting in the recovery
// queue.
func (c *Cache) QueueLength() int {
	if c.rec == nil {
		return 0
	}
	return int(c.rec.length.Load())
}
