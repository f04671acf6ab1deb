package tiercache

import (
	"bytes"
	"context"
	"errors"

	"github.com/tiercache/tiercache/internal/envelope"
	"github.com/tiercache/tiercache/internal/l2"
)

// Soft invalidation.
//
// InvalidateTagsSoft and ClearSoft (versions.go) add softStep to version
// counters; DeleteSoft rewrites each entry with its logical expiry set to
// now. Either way the entries become stale: reads miss them, loads replace
// them, and fail-safe serves them when a load fails or L2 is unreachable,
// exactly as it serves expired entries.

// errSoftRaced tells DeleteSoft that the key changed between its read and
// its write: it reads again.
var errSoftRaced = errors.New("the key changed")

// softAttempts bounds how often DeleteSoft reads a key again because it
// changed before the rewrite.
const softAttempts = 8

// DeleteSoft invalidates keys softly: in every instance and in L2 their
// entries become stale, as if their TTL had just ended. Get misses them and
// Fetch loads them again, but with Options.FailSafe they remain the
// fallback for FailSafe.MaxDuration from now when a load fails or L2 is
// unreachable. Each key is rewritten atomically (read, then a conditional
// write with the commands the production ACL allows, on every topology):
// a write of the key that lands in between is expired in turn or, if it
// lands after, kept.
//
// Without fail-safe, and for keys whose entry is a negative one or cannot
// be decoded, it is Delete. While L2 is unreachable the keys are deleted
// through the recovery queue (a hard delete: a soft one needs to read the
// entry), and the error matches ErrQueued.
func (c *Cache) DeleteSoft(ctx context.Context, keys ...string) error {
	if c.opts.FailSafe.MaxDuration <= 0 {
		return c.Delete(ctx, keys...)
	}
	for _, k := range keys {
		if err := c.check("delete", k); err != nil {
			return err
		}
	}
	n := 0 // keys expired softly
	defer func() { c.obs.rec.RecordInvalidations("delete_soft", n) }()
	for i, k := range keys {
		hard, err := c.expireKey(ctx, k)
		if c.l1 != nil {
			c.l1.Invalidate(k)
		}
		c.forgetFlight(k)
		switch {
		case unavailable(err):
			// Queue the rest as deletes: nothing is lost.
			return c.Delete(ctx, keys[i:]...)
		case err != nil:
			c.counter.errors.Add(1)
			return keyErr("delete", k, err)
		case hard:
			if err := c.Delete(ctx, k); err != nil {
				return err
			}
		default:
			n++
		}
	}
	return nil
}

// expireKey sets the logical expiry of key's entry in L2 to now, keeping
// it for FailSafe.MaxDuration. hard reports that the entry must be deleted
// instead (a negative or undecodable one).
func (c *Cache) expireKey(ctx context.Context, key string) (hard bool, err error) {
	if c.queued(key) {
		// The key's state in L2 is not its state once the queue is
		// replayed: queue a delete behind it.
		return true, nil
	}
	sw, ok := c.store.(l2.Swapper)
	if !ok {
		return true, nil
	}
	full := c.prefix + key
	for range softAttempts {
		cur, err := c.store.Get(ctx, full)
		if errors.Is(err, l2.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		env, err := envelope.Decode(cur, c.opts.MaxValueSize)
		if err != nil || env.Flags&envelope.FlagNegative != 0 {
			return true, nil
		}
		nowMs := c.opts.Now().UnixMilli()
		if env.ExpiresAt != 0 && env.ExpiresAt <= nowMs {
			return false, nil // expired already
		}
		env.ExpiresAt = max(nowMs, 1)
		b, err := envelope.Encode(nil, &env, max(c.opts.CompressAbove, 0))
		if err != nil {
			return true, nil
		}
		err = sw.CompareAndSwap(ctx, full, func(_ context.Context, now []byte) error {
			if !bytes.Equal(now, cur) {
				return errSoftRaced
			}
			return nil
		}, b, c.opts.FailSafe.MaxDuration)
		if errors.Is(err, errSoftRaced) || errors.Is(err, l2.ErrConflict) {
			continue
		}
		return false, err
	}
	return false, errors.Join(ErrConditionFailed, l2.ErrConflict)
}
