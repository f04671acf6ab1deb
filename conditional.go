package tiercache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tiercache/tiercache/internal/l1"
	"github.com/tiercache/tiercache/internal/l2"
)

// condition is what a conditional write requires of the key's current
// value: a value is current when it exists, has not expired, is not a
// cached "not found" and was not invalidated by InvalidateTags or Clear.
type condition struct {
	match  []string // IfMatch: the current value's ETag is one of these ("*": any current value)
	absent bool     // IfAbsent: no current value
}

// IfMatch makes Set conditional: it writes only if the key holds a
// current value whose ETag (Result.ETag) is one of etags, or any current
// value for "*". A value is current when it exists, has not expired and
// was not invalidated by InvalidateTags or Clear. Otherwise Set writes
// nothing and returns an error matching ErrConditionFailed. ETags may be
// given with or without their double quotes; weak ones (W/"...") never
// match.
//
// The check and the write are atomic with respect to every other write
// and delete of the key, on every topology (see Set). Only Set takes
// IfMatch and IfAbsent; SetMany, SetItems, Fetch and FetchMany refuse
// them with an error matching ErrInvalidOptions.
func IfMatch(etags ...string) SetOption {
	return func(o *setOptions) {
		c := o.condition()
		for _, t := range etags {
			c.match = append(c.match, unquoteETag(t))
		}
		if c.match == nil {
			c.match = []string{} // matches nothing
		}
	}
}

// IfAbsent makes Set conditional: it writes only if the key holds no
// current value (see IfMatch), and returns an error matching
// ErrConditionFailed otherwise. It is HTTP's "If-None-Match: *".
func IfAbsent() SetOption {
	return func(o *setOptions) { o.condition().absent = true }
}

func (o *setOptions) condition() *condition {
	if o.cond == nil {
		o.cond = &condition{}
	}
	return o.cond
}

// unquoteETag strips the double quotes of an HTTP entity tag.
func unquoteETag(t string) string {
	if len(t) >= 2 && t[0] == '"' && t[len(t)-1] == '"' {
		return t[1 : len(t)-1]
	}
	return t
}

// holds reports whether the condition holds for a key whose current value
// has the ETag etag ("" when there is no current value).
func (c *condition) holds(etag string) bool {
	if c.absent && etag != "" {
		return false
	}
	if c.match != nil && (etag == "" || !slices.ContainsFunc(c.match, func(t string) bool { return t == "*" || t == etag })) {
		return false
	}
	return true
}

// ReportETag makes Set store the ETag (as Result.ETag) of the value it
// wrote in *dst, when it returns nil: a following conditional write can
// use it without reading the value back. A write that is only queued
// (ErrQueued) reports none: its value may be stamped again when it is
// applied. Only Set takes it.
func ReportETag(dst *string) SetOption {
	return func(o *setOptions) { o.etag = dst }
}

// checkFillOptions validates the options of a write other than Set: its
// tags, and no condition.
func checkFillOptions(opts []SetOption) error {
	so := applySet(opts)
	if so.cond != nil || so.etag != nil {
		return fmt.Errorf("%w: IfMatch, IfAbsent and ReportETag apply to Set only", ErrInvalidOptions)
	}
	return checkTags(so.tags)
}

// DeleteIfMatch deletes key from both tiers only if it holds a current
// value whose ETag (Result.ETag) is one of etags, or any current value for
// "*" (see IfMatch). Otherwise it deletes nothing and returns an error
// matching ErrConditionFailed. The check and the delete are atomic with
// respect to every other write and delete of the key.
//
// Unlike Delete, it is never queued: while L2 is unreachable it returns
// an error matching ErrUnavailable, not ErrQueued, because the condition
// can only be checked against L2.
func (c *Cache) DeleteIfMatch(ctx context.Context, key string, etags ...string) error {
	if err := c.check("delete", key); err != nil {
		return err
	}
	var so setOptions
	IfMatch(etags...)(&so)
	if err := c.writeIf(ctx, key, so.cond, nil); err != nil {
		return keyErr("delete", key, err)
	}
	if c.rec != nil {
		c.rec.remember(opDel, []string{c.prefix + key}, c.opts.Now())
	}
	c.obs.rec.RecordInvalidations("delete", 1)
	return nil
}

// writeIf stores enc (nil: deletes the key) if cond holds for the key's
// current value in L2, atomically (l2.Swapper), then updates L1 as write
// does. It is never queued: a condition can only be checked against L2.
func (c *Cache) writeIf(ctx context.Context, key string, cond *condition, enc *encoded) error {
	if c.queued(key) || (enc != nil && c.rec != nil && c.vers.pendingIn([]encoded{*enc})) {
		// The key's state in L2 is not its state once the queue is
		// replayed: the condition cannot be checked.
		return fmt.Errorf("%w: an earlier operation on the key is queued; a conditional write cannot be checked until it is applied", ErrUnavailable)
	}
	var tok l1.Token
	if c.l1 != nil && !c.tracked && enc != nil {
		tok = c.l1.Snapshot(key)
	}
	var (
		value []byte
		ttl   time.Duration
	)
	if enc != nil {
		value, ttl = enc.bytes, enc.ttl
	}
	check := func(ctx context.Context, cur []byte) error { return c.checkCondition(ctx, key, cur, cond) }
	sw, ok := c.store.(l2.Swapper)
	if !ok {
		return errorf("tiercache: the L2 store %T does not support conditional writes", c.store)
	}
	err := sw.CompareAndSwap(ctx, c.prefix+key, check, value, ttl)
	c.forgetFlight(key)
	if c.l1 != nil {
		if err != nil || c.tracked || enc == nil {
			c.l1.Invalidate(key)
		} else {
			c.l1.SetAfterWrite(key, enc.entry, tok, c.now())
		}
	}
	if errors.Is(err, l2.ErrConflict) {
		// The key changed under every attempt: it is not the value the
		// condition was checked against.
		err = fmt.Errorf("%w: %w", ErrConditionFailed, err)
	}
	if err != nil && !errors.Is(err, ErrConditionFailed) {
		c.counter.errors.Add(1)
	}
	return err
}

// checkCondition decides whether cond holds for cur, the key's value in
// L2 (nil when missing). An unreadable, expired, negative or invalidated
// value is no current value.
func (c *Cache) checkCondition(ctx context.Context, key string, cur []byte, cond *condition) error {
	etag := ""
	if cur != nil {
		e, expired, err := c.decodeEntry(key, cur, c.now())
		if err == nil && !expired && !e.Negative {
			// Versions from L2, not the tracked cache: an invalidation
			// another instance acknowledged before this call must fail
			// an IfMatch although its push has not arrived yet.
			vd, err := c.validityFrom(ctx, e, freshVersions)
			if err != nil {
				return err
			}
			if vd == validYes {
				etag = e.ETag()
			}
		}
	}
	if !cond.holds(etag) {
		return ErrConditionFailed
	}
	return nil
}

// CompareAndSwap runs a conditional write under the breaker and the
// timeout, never retried: after an answer lost in transit the write may
// have been applied, and a retry would then find its own write and fail
// the condition. The reads check makes (tag and namespace versions) run
// under the write's breaker admission: taking their own could fail in
// the half-open state, whose few probes the write already holds one of,
// and reopen the breaker although L2 answers.
func (g *guarded) CompareAndSwap(ctx context.Context, key string, check func(ctx context.Context, cur []byte) error, value []byte, ttl time.Duration) error {
	sw, ok := g.s.(l2.Swapper)
	if !ok {
		return errorf("tiercache: the L2 store %T does not support conditional writes", g.s)
	}
	return g.do(ctx, "cas", false, func(ctx context.Context) error {
		return sw.CompareAndSwap(context.WithValue(ctx, admittedKey{}, true), key, check, value, ttl)
	})
}

// admittedKey marks the context of operations that run within another
// operation the breaker has admitted: they take no admission of their
// own.
type admittedKey struct{}
