// Package l2 defines the contract between the cache and its shared second
// tier. Implementations live in internal/memstore and internal/redisstore.
package l2

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned by Store.Get when the key does not exist.
var ErrNotFound = errors.New("l2: not found")

// ErrUnavailable marks errors where the store could not be reached or did
// not answer in time (as opposed to a reply that reports an error). Only
// these count against the circuit breaker, are retried, and send writes to
// the recovery queue.
var ErrUnavailable = errors.New("l2: unavailable")

// Item is one key and its encoded value for Store.MSet. A TTL of zero or
// less means the key never expires.
type Item struct {
	Key   string
	Value []byte
	TTL   time.Duration
}

// Store is a shared byte store. Keys given to a Store are already
// namespaced. Every method is safe for concurrent use.
type Store interface {
	// Get returns the value of key, or ErrNotFound.
	Get(ctx context.Context, key string) ([]byte, error)
	// MGet returns one slot per key, nil where the key is missing. It
	// costs one round trip per node, not one per key.
	MGet(ctx context.Context, keys []string) ([][]byte, error)
	// Set stores value under key with the TTL (<= 0: no expiry). The
	// store may keep value: the caller must not modify it afterwards.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// MSet stores every item, one round trip per node. The store may keep
	// or send the values without copying them: the caller must not modify
	// them afterwards.
	MSet(ctx context.Context, items []Item) error
	// Del removes the keys; missing keys are not an error.
	Del(ctx context.Context, keys ...string) error
	// Incr adds by to each key's integer value (a missing key counts as
	// 0) with single-key commands, one round trip per node, and returns
	// the new values.
	Incr(ctx context.Context, keys []string, by int64) ([]int64, error)
	// SetNX stores each item whose key does not exist yet, one round trip
	// per node. Items whose key exists are left alone.
	SetNX(ctx context.Context, items []Item) error
	// TryLock sets key to token with the TTL unless key exists; it
	// reports whether it did (the caller holds the lock).
	TryLock(ctx context.Context, key, token string, ttl time.Duration) (bool, error)
	// Unlock deletes key if, and only if, it still holds token; it
	// reports whether it did.
	Unlock(ctx context.Context, key, token string) (bool, error)
	// Close releases the store's resources.
	Close() error
}

// Prober is a Store that can check that every node it reads from still
// answers. Probe reads key (missing is an answer) and, where the store
// spans several nodes, reaches each of them; it returns an error when one
// did not answer within ctx.
type Prober interface {
	Probe(ctx context.Context, key string) error
}

// Tracker is a Store that reports invalidations (client tracking) and can
// write keys so that they stay tracked for this client afterwards: a copy
// of the written value kept in L1 is then invalidated by the next change
// made elsewhere, as a copy filled by a read is.
type Tracker interface {
	// MSetTracked stores every item as MSet does and, in the same round
	// trip, registers each key with the server's invalidation tracking.
	// ok[i] reports whether the value registered was items[i].Value:
	// false when another client wrote the key in between, or when the
	// store could not register it. On error, ok is nil.
	MSetTracked(ctx context.Context, items []Item) (ok []bool, err error)
}

// Invalidation is what a store reports when keys it served may have changed
// elsewhere. All is true when every key must be treated as changed, for
// example after the invalidation link was lost.
type Invalidation struct {
	Keys []string
	All  bool
}

// ErrConflict is returned by Swapper.CompareAndSwap when the key changed
// between the read and the write on every attempt.
var ErrConflict = errors.New("l2: the key kept changing")

// Swapper is a Store that can replace one key's value on a condition,
// atomically. The cache's conditional writes need it.
type Swapper interface {
	// CompareAndSwap reads key's value (nil when the key is missing) and
	// passes it to check, with the operation's context. When check
	// returns nil, it stores value under
	// key with the TTL (<= 0: no expiry), or deletes the key when value
	// is nil; check's error is returned as it is otherwise. No other
	// write of key lands between the read that check saw and the write:
	// when the key changed meanwhile, CompareAndSwap starts again from
	// the read, and gives up with ErrConflict after a few attempts.
	CompareAndSwap(ctx context.Context, key string, check func(ctx context.Context, cur []byte) error, value []byte, ttl time.Duration) error
}
