package tiercache

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/tiercache/tiercache/codec"
)

// Defaults applied to zero-valued Options fields.
const (
	DefaultNamespace     = "tiercache"
	DefaultTTL           = time.Hour
	DefaultNegativeTTL   = 30 * time.Second
	DefaultL1MaxBytes    = 64 << 20
	DefaultL1MaxTTL      = 5 * time.Minute
	DefaultMaxKeyLength  = 1024
	DefaultMaxValueSize  = 4 << 20
	DefaultCompressAbove = 1024

	DefaultOperationTimeout     = time.Second
	DefaultRetries              = 2
	DefaultRetryBackoff         = 20 * time.Millisecond
	DefaultBreakerThreshold     = 5
	DefaultBreakerOpenTimeout   = 200 * time.Millisecond
	DefaultFailSafeThrottle     = 30 * time.Second
	DefaultLockTTL              = 10 * time.Second
	DefaultLockMaxWait          = 3 * time.Second
	DefaultRecoveryQueueSize    = 10000
	DefaultRecoveryReplayWindow = 30 * time.Second
)

// Options configure a Cache. The zero value is usable: an in-memory L2, a
// 64 MiB L1, namespace "tiercache" and a one hour TTL.
type Options struct {
	// Namespace prefixes every L2 key as "<Namespace>:<key>". Empty means
	// DefaultNamespace. It may not contain whitespace, braces or '#' (version counters live under "<Namespace>#").
	Namespace string

	// Redis selects the L2. Its zero value (no URL, no addresses) means
	// the embedded in-memory store, private to this process.
	Redis RedisOptions

	// L1 configures the in-process tier.
	L1 L1Options

	// DefaultTTL is the lifetime of an entry written without WithTTL.
	// Zero means DefaultTTL (one hour).
	DefaultTTL time.Duration

	// NegativeTTL is how long a loader's ErrNotFound is remembered. Zero
	// means DefaultNegativeTTL; a negative value disables negative caching.
	NegativeTTL time.Duration

	// TTLJitter, in [0, 1), shortens each TTL by a random fraction of up to
	// this much so that entries written together do not expire together.
	// Zero means no jitter.
	TTLJitter float64

	// Codec names the codec for keys that match no rule. Empty means
	// "msgpack". Built in: "msgpack", "json", "raw".
	Codec string

	// CodecRules map key patterns to codec names; the first match wins.
	// Nil means codec.DefaultRules (JSON for api:, response: and config:
	// keys); an empty non-nil slice means no rules.
	CodecRules []codec.Rule

	// Codecs registers extra codecs (ids 128-255) for CodecRules and Codec.
	Codecs []codec.Codec

	// CompressAbove is the payload size in bytes from which values are
	// compressed with s2. Zero means DefaultCompressAbove; negative
	// disables compression.
	CompressAbove int

	// MaxKeyLength bounds keys, in bytes. Zero means DefaultMaxKeyLength.
	MaxKeyLength int

	// MaxValueSize bounds encoded payloads, in bytes. Zero means
	// DefaultMaxValueSize.
	MaxValueSize int

	// ReadPlainValues reads a key holding bytes tiercache did not write
	// (no envelope: a plain Redis string set by another program) as a raw
	// value: codec raw, no TTL known to the cache, no tags. Reads answer
	// it, coherently (a change in Redis reaches every L1 as any other);
	// InvalidateTags and Clear do not apply to it, Delete does, and a
	// write through tiercache replaces it with an envelope. Meant for
	// migrating from another cache. Without it such a read fails with
	// ErrNotTiercache.
	ReadPlainValues bool

	// Logger receives warnings such as corrupt stored values. Nil means
	// slog.Default(). Secrets are never logged.
	Logger *slog.Logger

	// OperationTimeout bounds each L2 operation (each attempt of it).
	// Operations whose context cannot be cancelled share deadlines at a
	// grain of OperationTimeout/64 (1 to 10 ms), so they may run up to one
	// grain longer. Zero means DefaultOperationTimeout; negative means no
	// bound beyond
	// the caller's context.
	OperationTimeout time.Duration

	// LivenessInterval is how often the cache probes L2 while the L1, or
	// without L1 the cached tag and namespace versions, rely on Redis's
	// invalidations (see docs/consistency.md): a probe that gets no
	// answer within OperationTimeout/2 (100 ms to 1 s) ends the freshness
	// of every L1 entry and cached version. A shorter interval bounds how long
	// a silent link can hold back an invalidation more tightly, at one
	// Redis read per interval (and a PING per master on Cluster). Zero
	// means OperationTimeout/4, kept within 50 to 250 ms; negative turns
	// the probe off, leaving only the link's own loss to end freshness.
	LivenessInterval time.Duration

	// ReadTimeout is one time budget for the L2 part of a whole read call
	// (Get, Lookup, GetMany, and the L2 reads of Fetch and FetchMany),
	// version checks, retries and backoff included. When it runs out, the
	// read fails as when L2 is unreachable: Get and Fetch answer with a
	// fail-safe stale value when one exists (see FailSafe), Fetch calls
	// its loader. Fetch's and FetchMany's write of what the loader returned
	// gets a budget of its own; when it runs out, the value is returned
	// but not cached. Each attempt is still bounded by OperationTimeout. The
	// caller's context may end the read sooner. Reads whose context cannot
	// be cancelled share deadlines at a grain of ReadTimeout/64 (1 to
	// 10 ms), so they may run up to one grain longer. Zero means no
	// whole-call budget: OperationTimeout per attempt, times the attempts.
	ReadTimeout time.Duration

	// Retries is how many times an idempotent L2 operation (reads, SET,
	// DEL) is retried after L2 was unreachable, with exponential backoff
	// from RetryBackoff and full jitter. Zero means DefaultRetries;
	// negative means none. Increments (InvalidateTags, Clear) and lock
	// attempts are never retried.
	Retries      int
	RetryBackoff time.Duration // zero means DefaultRetryBackoff

	// Breaker configures the circuit breaker around L2.
	Breaker BreakerOptions

	// FailSafe keeps expired entries usable as stale values when a
	// loader fails or L2 is unreachable.
	FailSafe FailSafeOptions

	// LoaderSoftTimeout: when a loader has not answered after this long
	// and a stale value exists, Fetch returns the stale value and lets
	// the loader finish in the background. Zero means no soft timeout.
	LoaderSoftTimeout time.Duration

	// LoaderHardTimeout cancels a loader's context after this long; Fetch
	// then returns a stale value if one exists, or ErrLoaderTimeout.
	// Zero means no hard timeout.
	LoaderHardTimeout time.Duration

	// EagerRefreshThreshold, in (0, 1), makes a Fetch that finds an entry
	// older than this fraction of its TTL start one background refresh
	// of it (one per key at a time) while returning the current value.
	// Zero means no eager refresh.
	EagerRefreshThreshold float64

	// Lock, when enabled, makes instances that miss the same key at once
	// elect one loader through a lock in L2.
	Lock LockOptions

	// RecoveryQueueSize bounds the auto-recovery queue (operations on
	// distinct keys). Zero means DefaultRecoveryQueueSize; negative
	// disables the queue, and failed writes then just fail.
	RecoveryQueueSize int

	// RecoveryReplayWindow: invalidations acknowledged within this window
	// are applied again after a lost link, in case a failover lost them.
	// Zero means DefaultRecoveryReplayWindow; negative disables it.
	RecoveryReplayWindow time.Duration

	// RecoveryJournalDir, when set, keeps the recovery queue on disk: each
	// operation it accepts is appended to "<dir>/<Namespace>.journal" and
	// fsynced before the call returns ErrQueued, and the next New with
	// the same directory queues again what was not applied (Sets as
	// Deletes of their keys), serving none of their keys as fresh until
	// then. One process per directory and namespace (a lock file enforces
	// it: ErrJournalLocked). A journal that cannot be trusted is moved
	// aside and the namespace cleared. Empty means an in-memory queue
	// only. See docs/durability.md.
	RecoveryJournalDir string

	// OnAccess, when set, is called with the key of every read (Get,
	// Lookup, GetMany, Fetch, FetchMany), hit or miss, on the caller's
	// goroutine: keep it short and concurrency-safe. Warming's hot-key
	// tracker uses it. Nil means no call.
	OnAccess func(key string)

	// Recorder receives metrics (see Recorder; tiercacheprom exports them
	// to Prometheus). Nil means NopRecorder: nothing is exported, and
	// Counters, Stats and Health work all the same.
	Recorder Recorder

	// TracerProvider, when set, gives every L2 operation attempt and
	// every loader call an OpenTelemetry span. Nil means no tracing, at
	// no cost.
	TracerProvider trace.TracerProvider

	// Fleet publishes this instance's heartbeat to the other instances of
	// the namespace (Cache.Fleet). The zero value is off.
	Fleet FleetOptions

	// Canary runs the coherence canary, which measures how long a write
	// takes to invalidate the other instances' L1 (Cache.Coherence). It
	// needs Fleet.Enabled. The zero value is off.
	Canary CanaryOptions

	// Now is the clock, for tests. Nil means time.Now.
	Now func() time.Time

	nowSet bool // Now was given, not defaulted
}

// RedisOptions select and configure a Redis L2. Set URL, or Addrs, or
// SentinelAddrs with SentinelMaster. Fields given explicitly override the
// same settings in URL.
type RedisOptions struct {
	// URL is redis://[user:password@]host:port[/db] or rediss:// for TLS.
	// Extra hosts for Cluster seeds may be given as ?addr=host:port.
	URL string

	// Addrs are host:port addresses: one for standalone, any number of
	// seeds for Cluster.
	Addrs []string

	// Username and Password authenticate (ACL user or requirepass).
	Username string
	Password string

	// DB selects the database (standalone and Sentinel only).
	DB int

	// TLS enables TLS with this configuration. rediss:// URLs enable it
	// with defaults.
	TLS *tls.Config

	// SentinelMaster is the Sentinel master set name (REDIS_SERVICE_NAME).
	// Setting it selects Sentinel mode with SentinelAddrs.
	SentinelMaster string

	// SentinelAddrs are the sentinels' host:port addresses.
	SentinelAddrs []string

	// SentinelUsername and SentinelPassword authenticate to the
	// sentinels when they differ from the data nodes.
	SentinelUsername string
	SentinelPassword string

	// Cluster forces Redis Cluster mode; it is also detected.
	Cluster bool

	// DialTimeout and WriteTimeout bound connection set-up and writes.
	// Zero means the driver's defaults (5 s and 10 s).
	DialTimeout  time.Duration
	WriteTimeout time.Duration

	// DialContext opens every TCP connection of the cache, to the Redis
	// nodes and to the sentinels (network is "tcp", addr host:port); TLS,
	// when configured, runs over the connection it returns. It lets a
	// program route the connections (a proxy, a tunnel) or hold one
	// instance's link still, as tiercache verify's link-pause fault does.
	// Nil means a plain dial bounded by DialTimeout.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)

	// LazyConnect makes New succeed while Redis is unreachable: the cache
	// connects in the background, retrying with a backoff (100 ms doubling
	// to 5 s) until Redis answers, and then works without a restart. Until
	// then every L2 operation fails at once as unreachable: reads miss (or
	// call their loader), writes go to the recovery queue, the breaker
	// opens, Health reports the cache unhealthy and Connected is false.
	// Close stops the attempts; it waits for one in flight, whose dial and
	// handshake DialTimeout bounds. False means New fails when no Redis
	// answers.
	LazyConnect bool
}

// BreakerOptions configure the circuit breaker around L2
// (CIRCUIT_BREAKER_ENABLED, CIRCUIT_BREAKER_THRESHOLD,
// CIRCUIT_BREAKER_TIMEOUT).
type BreakerOptions struct {
	// Disabled turns the breaker off.
	Disabled bool
	// Threshold is the number of consecutive failed L2 operations that
	// opens the breaker. Zero means DefaultBreakerThreshold.
	Threshold uint32
	// OpenTimeout is how long the breaker stays open before it lets
	// probes through. Zero means DefaultBreakerOpenTimeout (200 ms): a
	// probe is one operation, cheap even on a large fleet, and a short
	// period ends the client's outage soon after Redis's own, as after a
	// Sentinel failover (see docs/reliability.md).
	OpenTimeout time.Duration
	// HalfOpenProbes is how many operations may probe L2 while
	// half-open; they must all succeed to close it. Zero means 1.
	HalfOpenProbes uint32
}

// FailSafeOptions configure stale serving.
type FailSafeOptions struct {
	// MaxDuration is how long after its TTL an entry stays usable as a
	// stale value (it stays in Redis that much longer). Zero disables
	// fail-safe.
	MaxDuration time.Duration
	// Throttle is how long a stale value served after a loader failure
	// is reused before the loader is tried again. It also bounds how long
	// a value loaded while L2 is unreachable answers later Fetches (flagged
	// stale) while L2 still fails, instead of a new loader call. Zero means
	// DefaultFailSafeThrottle.
	Throttle time.Duration
}

// LockOptions configure the fleet-wide stampede lock of Fetch. The
// instance that takes a key's lock loads it; the others wait for its value
// in L2. A waiter is woken by the invalidation Redis sends it when the
// holder writes the key (its own read of the key registered it), so it
// answers about one round trip after the holder's write; it also polls
// L2 at 5 ms doubling up to 100 ms, as a fallback.
type LockOptions struct {
	// Enabled turns the lock on.
	Enabled bool
	// TTL bounds how long a lock holder may block others if it dies.
	// Zero means DefaultLockTTL.
	TTL time.Duration
	// MaxWait bounds how long a waiter waits for the holder's value
	// before it loads for itself. Zero means DefaultLockMaxWait.
	MaxWait time.Duration
}

// enabled reports whether a Redis L2 is configured.
func (r RedisOptions) enabled() bool {
	return r.URL != "" || len(r.Addrs) > 0 || len(r.SentinelAddrs) > 0 || r.SentinelMaster != ""
}

// String describes the target without credentials.
func (r RedisOptions) String() string {
	switch {
	case r.SentinelMaster != "":
		return "sentinel " + r.SentinelMaster + "@" + strings.Join(r.SentinelAddrs, ",")
	case r.URL != "":
		return redactURL(r.URL)
	case len(r.Addrs) > 0:
		return strings.Join(r.Addrs, ",")
	}
	return "memory"
}

// L1Options configure the in-process tier.
type L1Options struct {
	// Disabled turns L1 off: every read goes to L2.
	Disabled bool

	// MaxBytes bounds the L1's weight (keys, payloads and per-entry
	// overhead). Zero means DefaultL1MaxBytes (64 MiB).
	MaxBytes int64

	// MaxTTL caps how long an entry stays in L1, whatever its TTL. Zero
	// means DefaultL1MaxTTL (five minutes).
	MaxTTL time.Duration
}

var nsPattern = regexp.MustCompile(`^[^\s{}#]+$`)

// instancePattern is what Fleet.InstanceID may be.
var instancePattern = regexp.MustCompile(`^[^\s\p{Cc}]{1,128}$`)

// withDefaults returns o with zero values replaced by defaults.
func (o Options) withDefaults() Options {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.DefaultTTL == 0 {
		o.DefaultTTL = DefaultTTL
	}
	if o.NegativeTTL == 0 {
		o.NegativeTTL = DefaultNegativeTTL
	}
	if o.Codec == "" {
		o.Codec = "msgpack"
	}
	if o.CodecRules == nil {
		o.CodecRules = codec.DefaultRules()
	}
	if o.CompressAbove == 0 {
		o.CompressAbove = DefaultCompressAbove
	}
	if o.MaxKeyLength == 0 {
		o.MaxKeyLength = DefaultMaxKeyLength
	}
	if o.MaxValueSize == 0 {
		o.MaxValueSize = DefaultMaxValueSize
	}
	if o.L1.MaxBytes == 0 {
		o.L1.MaxBytes = DefaultL1MaxBytes
	}
	if o.L1.MaxTTL == 0 {
		o.L1.MaxTTL = DefaultL1MaxTTL
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.OperationTimeout == 0 {
		o.OperationTimeout = DefaultOperationTimeout
	}
	if o.Retries == 0 {
		o.Retries = DefaultRetries
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.Breaker.Threshold == 0 {
		o.Breaker.Threshold = DefaultBreakerThreshold
	}
	if o.Breaker.OpenTimeout == 0 {
		o.Breaker.OpenTimeout = DefaultBreakerOpenTimeout
	}
	if o.Breaker.HalfOpenProbes == 0 {
		o.Breaker.HalfOpenProbes = 1
	}
	if o.FailSafe.Throttle == 0 {
		o.FailSafe.Throttle = DefaultFailSafeThrottle
	}
	if o.Lock.TTL == 0 {
		o.Lock.TTL = DefaultLockTTL
	}
	if o.Lock.MaxWait == 0 {
		o.Lock.MaxWait = DefaultLockMaxWait
	}
	if o.RecoveryQueueSize == 0 {
		o.RecoveryQueueSize = DefaultRecoveryQueueSize
	}
	if o.RecoveryReplayWindow == 0 {
		o.RecoveryReplayWindow = DefaultRecoveryReplayWindow
	}
	if o.Fleet.Heartbeat == 0 {
		o.Fleet.Heartbeat = DefaultFleetHeartbeat
	}
	if o.Fleet.Enabled && o.Fleet.InstanceID == "" {
		o.Fleet.InstanceID = defaultInstanceID()
	}
	if o.Canary.MissAfter == 0 {
		o.Canary.MissAfter = DefaultCanaryMissAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	} else {
		o.nowSet = true
	}
	return o
}

// validate checks defaulted options.
func (o Options) validate() error {
	switch {
	case !nsPattern.MatchString(o.Namespace):
		return optErr("namespace %q may not be empty or contain whitespace, braces or #", o.Namespace)
	case o.DefaultTTL < 0:
		return optErr("DefaultTTL %v is negative", o.DefaultTTL)
	case o.TTLJitter < 0 || o.TTLJitter >= 1:
		return optErr("TTLJitter %v is outside [0, 1)", o.TTLJitter)
	case o.MaxKeyLength < 0:
		return optErr("MaxKeyLength %d is negative", o.MaxKeyLength)
	case o.MaxValueSize < 0:
		return optErr("MaxValueSize %d is negative", o.MaxValueSize)
	case o.L1.MaxBytes < 0:
		return optErr("L1.MaxBytes %d is negative", o.L1.MaxBytes)
	case o.L1.MaxTTL < 0:
		return optErr("L1.MaxTTL %v is negative", o.L1.MaxTTL)
	case o.EagerRefreshThreshold < 0 || o.EagerRefreshThreshold >= 1:
		return optErr("EagerRefreshThreshold %v is outside [0, 1)", o.EagerRefreshThreshold)
	case o.FailSafe.MaxDuration < 0 || o.FailSafe.Throttle < 0:
		return optErr("FailSafe durations may not be negative")
	case o.LoaderSoftTimeout < 0 || o.LoaderHardTimeout < 0:
		return optErr("loader timeouts may not be negative")
	case o.LoaderHardTimeout > 0 && o.LoaderSoftTimeout > o.LoaderHardTimeout:
		return optErr("LoaderSoftTimeout %v exceeds LoaderHardTimeout %v", o.LoaderSoftTimeout, o.LoaderHardTimeout)
	case o.ReadTimeout < 0:
		return optErr("ReadTimeout %v is negative", o.ReadTimeout)
	case o.Breaker.OpenTimeout < 0 || o.Lock.TTL < 0 || o.Lock.MaxWait < 0:
		return optErr("Breaker and Lock durations may not be negative")
	case o.Fleet.Heartbeat < 0 || o.Canary.Interval < 0 || o.Canary.MissAfter < 0:
		return optErr("Fleet.Heartbeat, Canary.Interval and Canary.MissAfter may not be negative")
	case !instancePattern.MatchString(o.Fleet.InstanceID) && o.Fleet.InstanceID != "":
		return optErr("Fleet.InstanceID %q must be 1 to 128 bytes without white space or control characters", o.Fleet.InstanceID)
	case o.Canary.Interval > 0 && !o.Fleet.Enabled:
		return optErr("Canary.Interval needs Fleet.Enabled: the canary learns from the fleet registry which instances write markers")
	case o.RecoveryJournalDir != "" && o.RecoveryQueueSize < 0:
		return optErr("RecoveryJournalDir needs the recovery queue (RecoveryQueueSize is negative)")
	}
	return o.Redis.validate()
}

func (r RedisOptions) validate() error {
	if r.URL != "" {
		u, err := url.Parse(r.URL)
		if err != nil {
			return optErr("malformed Redis URL %q", redactURL(r.URL))
		}
		if u.Scheme != "redis" && u.Scheme != "rediss" && u.Scheme != "unix" {
			return optErr("Redis URL scheme %q is not redis, rediss or unix", u.Scheme)
		}
		if u.Scheme != "unix" && u.Host == "" {
			return optErr("Redis URL %q has no host", redactURL(r.URL))
		}
	}
	if r.SentinelMaster != "" && len(r.SentinelAddrs) == 0 {
		return optErr("Sentinel master %q needs SentinelAddrs", r.SentinelMaster)
	}
	if len(r.SentinelAddrs) > 0 && r.SentinelMaster == "" {
		return optErr("SentinelAddrs need SentinelMaster (REDIS_SERVICE_NAME)")
	}
	if r.DB < 0 {
		return optErr("DB %d is negative", r.DB)
	}
	return nil
}

// redactURL removes any password from a URL-ish string, even a malformed
// one.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
		}
		q := u.Query()
		for k := range q {
			if strings.Contains(strings.ToLower(k), "pass") || strings.Contains(strings.ToLower(k), "token") {
				q.Set(k, "xxxxx")
			}
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	// Unparseable: drop everything between "://" and the last '@'.
	if i := strings.Index(raw, "://"); i >= 0 {
		if j := strings.LastIndex(raw, "@"); j > i {
			return raw[:i+3] + "xxxxx" + raw[j:]
		}
	}
	if j := strings.LastIndex(raw, "@"); j >= 0 {
		return "xxxxx" + raw[j:]
	}
	return raw
}
