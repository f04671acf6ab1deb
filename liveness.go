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
//
// Trust ends by suspension first (l1.Cache.Suspend): the probe keeps
// waiting, up to probeGrace times its wait. Redis writes the notices it
// owes a connection before the replies that follow them, and they are
// applied as they are read, so when the late answer comes on the same
// link every notice held back has been applied: L1 is resumed as it is,
// with no entry to read again (a process starved of CPU, or a Redis
// that stalled for a moment, would otherwise send every read to Redis at
// the worst time). When no answer comes, or the link was lost meanwhile,
// freshness ends for good, as after a lost link.

// probeGrace is how many probe waits a suspended L1 waits for the late
// answer before its freshness ends for good.
const probeGrace = 4

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
		c.probe(p, wait)
	}
}

// probe runs one liveness probe: it suspends L1 when the answer takes
// longer than wait, resumes it when the answer comes within probeGrace
// waits on a link that was not lost meanwhile, and otherwise ends
// freshness.
func (c *Cache) probe(p l2.Prober, wait time.Duration) {
	ctx, cancel := context.WithTimeout(c.ctx, probeGrace*wait)
	defer cancel()
	answered := func(err error) bool { return err == nil || errors.Is(err, l2.ErrNotFound) }
	done := make(chan error, 1)
	go func() { done <- p.Probe(ctx, c.vers.nsKey) }()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case err := <-done:
		if answered(err) || c.ctx.Err() != nil {
			return
		}
		// Failed within the wait (the link broke): as below.
		c.counter.linkSuspects.Add(1)
		c.endFreshness()
		return
	case <-t.C:
	}
	c.suspend()
	resets := c.counter.invalidationsAll.Load()
	err := <-done
	switch {
	case c.ctx.Err() != nil:
	case answered(err) && c.counter.invalidationsAll.Load() == resets:
		// Every notice owed before the answer has been applied.
		c.counter.linkResumes.Add(1)
	default:
		c.dropFreshness() // counted by suspend
	}
	c.resume()
}

// suspend stops L1 and the cached versions from being trusted until
// resume: the L2 did not answer the probe in time, so invalidations may be
// held back. It counts as a link reset and a link suspect.
func (c *Cache) suspend() {
	c.vers.suspended.Store(true)
	if c.l1 != nil {
		c.l1.Suspend()
	}
	c.obs.linkLost(time.Now())
	c.counter.invalidationsAll.Add(1)
	c.counter.linkSuspects.Add(1)
}

func (c *Cache) resume() {
	if c.l1 != nil {
		c.l1.Resume()
	}
	c.vers.suspended.Store(false)
}

// endFreshness makes every L1 entry and cached version stale at once, when
// the invalidation link is lost or no longer trusted.
func (c *Cache) endFreshness() {
	c.obs.linkLost(time.Now())
	c.dropFreshness()
	c.counter.invalidationsAll.Add(1)
}

// dropFreshness is endFreshness without counting it.
func (c *Cache) dropFreshness() {
	c.vers.reset()
	if c.l1 != nil {
		c.l1.InvalidateAll()
	}
}
