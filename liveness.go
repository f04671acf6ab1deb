package tiercache

import (
	"context"
	"errors"
	"time"

	"github.com/tiercache/tiercache/internal/l2"
)

// A tracking connection that stops answering also stops delivering
// invalidations, without closing: a paused or partitioned Redis, or one
// that has acknowledged a write to another client and not yet flushed the
// invalidations it owes this one. Until the connection closes, the L1
// would keep serving as fresh what Redis may already have replaced.
//
// So while the L2 reports invalidations, the cache probes it every
// LivenessInterval, by default OperationTimeout/4 (50 to 250 ms): it reads one key of its own, and on
// Cluster also PINGs every master (l2.Prober). It gives the probe
// OperationTimeout/2 (100 ms to 1 s). When it gets no answer in time,
// every L1 entry stops being fresh, as after a lost link: reads go to L2,
// or to fail-safe, flagged stale. An invalidation can thus be held back
// from this instance for at most about three quarters of OperationTimeout
// before the instance stops trusting its L1. Recent invalidations are not
// replayed: the connection is still open, and Redis delivers what it owes
// once it answers again. Without L1 the probe runs all the same: the
// cached tag and namespace versions rely on invalidations too
// (tracking.go).

// livenessTimes returns how often the probe runs and how long it waits for
// an answer.
func (o *Options) livenessTimes() (every, wait time.Duration) {
	timeout := o.OperationTimeout
	if timeout <= 0 {
		timeout = DefaultOperationTimeout
	}
	every = o.LivenessInterval
	if every == 0 {
		every = min(max(timeout/4, 50*time.Millisecond), 250*time.Millisecond)
	}
	return every, min(max(timeout/2, 100*time.Millisecond), time.Second)
}

// LivenessBound returns how long, at most, a link to Redis that stops
// answering without closing (a paused or partitioned node) can hold back
// an invalidation while this cache still serves its L1 as fresh: one
// probe interval plus the probe's wait (by default three quarters of
// OperationTimeout). Zero means no probe runs: without Redis, or with
// LivenessInterval negative, when only the link's loss ends freshness.
func (c *Cache) LivenessBound() time.Duration {
	if !c.live {
		return 0
	}
	every, wait := c.opts.livenessTimes()
	return every + wait
}

// livenessLoop probes the L2 until the cache closes.
func (c *Cache) livenessLoop(p l2.Prober) {
	defer c.bg.Done()
	every, wait := c.opts.livenessTimes()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if !c.Connected() {
			// A lazy store not connected yet: no link to watch.
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, wait)
		err := p.Probe(ctx, c.vers.nsKey)
		cancel()
		if err == nil || errors.Is(err, l2.ErrNotFound) || c.ctx.Err() != nil {
			continue
		}
		c.linkSuspect()
	}
}

// linkSuspect ends the freshness of every L1 entry: the L2 did not answer
// in time, so invalidations may be held back.
func (c *Cache) linkSuspect() {
	c.endFreshness()
	c.counter.linkSuspects.Add(1)
}

// endFreshness makes every L1 entry and cached version stale at once, when
// the invalidation link is lost or no longer trusted.
func (c *Cache) endFreshness() {
	c.obs.linkLost(time.Now())
	c.vers.reset()
	if c.l1 != nil {
		c.l1.InvalidateAll()
	}
	c.counter.invalidationsAll.Add(1)
}
