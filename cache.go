package tiercache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/codec"
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
