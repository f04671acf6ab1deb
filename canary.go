package tiercache

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The coherence canary. Every instance with Canary.Interval writes a
// marker, "<namespace>:_tiercache:canary:<instance id>", every interval:
// its sequence number and the time it was sent, on Redis's clock (see
// clock.go). Every other instance reads each marker with tracking, so
// Redis tells it when the marker changes, as it would about any key that
// instance holds in L1; the canary waits for that invalidation like a lock
// waiter (keyWaiters), reads the marker again and records the lag: the
// time it learned of the change, on Redis's clock, minus the marker's
// time. So the lag is how long a write took to invalidate another
// instance's L1 copy: the writer's way to Redis, Redis's invalidation
// push, and the reader's wake-up. It does not depend on the hosts' clocks
// agreeing; its error is at most half the TIME round trip of each side
// (CoherenceStats.ClockUncertainty).
//
// A marker is missed when the instance learns of a later one first (a
// sequence number skipped), or when its periodic check (one MGET of every
// marker per interval) finds it older than MissAfter without its
// invalidation having arrived: an invalidation lost, a link that is down,
// or one slower than MissAfter.

// DefaultCanaryMissAfter is CanaryOptions.MissAfter when it is zero.
const DefaultCanaryMissAfter = 2 * time.Second

// canaryPrefix prefixes the user keys of the markers.
const canaryPrefix = "_tiercache:canary:"

// CanaryOptions configure the coherence canary. It needs Fleet.Enabled,
// which tells each instance which others write markers. The zero value is
// off.
type CanaryOptions struct {
	// Interval is how often this instance writes its marker. Zero means
	// no canary. Each interval costs one SET and one MGET (one per node
	// on Cluster), and one GET per other instance's marker.
	Interval time.Duration

	// MissAfter is how long after it was written a marker may take to
	// reach this instance before it counts as missed. Zero means
	// DefaultCanaryMissAfter.
	MissAfter time.Duration
}

// CoherenceStats are the coherence canary's figures on this instance
// (Stats.Coherence, Cache.Coherence).
type CoherenceStats struct {
	Interval  time.Duration `json:"interval_ns"`
	MissAfter time.Duration `json:"miss_after_ns"`
	// Written counts the markers this instance wrote.
	Written uint64 `json:"written"`
	// Seen counts the other instances' markers whose invalidation
	// reached this instance; Lag has the lag of each.
	Seen uint64 `json:"seen"`
	// Missed counts the other instances' markers that did not reach it
	// (see the package's coherence canary notes).
	Missed uint64 `json:"missed"`
	// Watching is how many other instances' markers it follows.
	Watching int `json:"watching"`
	// Lag is the lag percentiles over the last 30 to 60 seconds.
	Lag LatencySummary `json:"lag"`
	// ClockOffset is Redis's clock minus this host's, and
	// ClockUncertainty the bound of the estimate's error.
	ClockOffset      time.Duration `json:"clock_offset_ns"`
	ClockUncertainty time.Duration `json:"clock_uncertainty_ns"`
}

// marker is the value of a canary key.
type marker struct {
	ID  string `json:"id"`
	Seq uint64 `json:"seq"`
	At  int64  `json:"at"` // Unix nanoseconds, Redis's clock
}

// markerChange is an invalidation of a marker, with when it arrived.
type markerChange struct {
	id string
	at time.Time
}

// followed is what the canary knows of another instance's marker.
type followed struct {
	seen  uint64 // last sequence number accounted for
	known bool   // seen holds a read
	armed bool   // a waiter is registered for the marker
}

type canary struct {
	c         *Cache
	interval  time.Duration
	missAfter time.Duration
	seq       uint64
	changes   chan markerChange
	stop      chan struct{}
	wg        sync.WaitGroup

	mu      sync.Mutex
	members []string // other instances with a canary, from the last heartbeat

	follow map[string]*followed // run's goroutine only

	written, seen, missed atomic.Uint64
	watching              atomic.Int32
	lag                   latencyWindow
}

func newCanary(c *Cache) *canary {
	return &canary{
		c: c, interval: c.opts.Canary.Interval, missAfter: c.opts.Canary.MissAfter,
		changes: make(chan markerChange, 64), stop: make(chan struct{}), follow: map[string]*followed{},
	}
}

func markerKey(id string) string { return canaryPrefix + id }

// setMembers takes the registry's members from a heartbeat.
func (k *canary) setMembers(ms map[string]FleetMember) {
	var ids []string
	for id, m := range ms {
		if id != k.c.fleet.id && m.CanaryInterval > 0 && !m.Stopped {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	k.mu.Lock()
	k.members = ids
	k.mu.Unlock()
}

// run writes this instance's markers and follows the others' until the
// cache closes.
func (k *canary) run() {
	defer k.c.bg.Done()
	t := time.NewTicker(k.interval)
	defer t.Stop()
	for {
		select {
		case <-k.c.ctx.Done():
			close(k.stop)
			k.wg.Wait()
			return
		case ch := <-k.changes:
			k.changed(ch)
		case <-t.C:
			k.write()
			k.check()
		}
	}
}

// ctx bounds one of the canary's operations.
func (k *canary) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(k.c.ctx, k.c.bgTimeout())
}

// write writes this instance's next marker, once Redis's clock is known.
func (k *canary) write() {
	clock := k.c.fleet.clock
	if !clock.synced.Load() {
		return
	}
	ctx, cancel := k.ctx()
	defer cancel()
	k.seq++
	v, _ := json.Marshal(marker{ID: k.c.fleet.id, Seq: k.seq, At: clock.now().UnixNano()})
	ttl := max(20*k.interval, 2*k.missAfter, time.Minute)
	if err := k.c.guard.s.Set(ctx, k.c.prefix+markerKey(k.c.fleet.id), v, ttl); err != nil {
		k.c.logger.Debug("tiercache: canary: write the marker", "err", redactErr(err, k.c.opts.Redis))
		return
	}
	k.written.Add(1)
}

// arm registers a waiter for id's marker, unless one is registered: its
// invalidation sends a markerChange.
func (k *canary) arm(id string, f *followed) {
	if f.armed {
		return
	}
	f.armed = true
	ch, done := k.c.waiters.watch(markerKey(id))
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer done()
		select {
		case <-ch:
			select {
			case k.changes <- markerChange{id: id, at: time.Now()}:
			case <-k.stop:
			}
		case <-k.stop:
		}
	}()
}

// changed handles an invalidation of a marker: it reads the marker again
// (which also tracks it again) and records the lag of a new one.
func (k *canary) changed(ch markerChange) {
	f := k.follow[ch.id]
	if f == nil {
		return
	}
	f.armed = false
	k.arm(ch.id, f)
	ctx, cancel := k.ctx()
	defer cancel()
	b, err := k.c.guard.s.Get(ctx, k.c.prefix+markerKey(ch.id))
	if err != nil {
		return // the check will read it
	}
	var m marker
	if json.Unmarshal(b, &m) != nil {
		return
	}
	switch {
	case !f.known || m.Seq < f.seen: // first read, or the writer started again
		f.seen, f.known = m.Seq, true
	case m.Seq > f.seen:
		lag := max(ch.at.Add(k.c.fleet.clock.offset()).Sub(time.Unix(0, m.At)), 0)
		k.lag.observe(time.Now().UnixNano(), lag)
		k.c.obs.rec.RecordCoherenceLag(lag)
		k.seen.Add(1)
		if skipped := m.Seq - f.seen - 1; skipped > 0 {
			k.missed.Add(skipped)
		}
		f.seen = m.Seq
	}
}

// check follows the current members, reads every marker (which also
// tracks them), and counts as missed the markers older than MissAfter
// whose invalidation has not arrived.
func (k *canary) check() {
	k.mu.Lock()
	ids := k.members
	k.mu.Unlock()
	for id := range k.follow {
		if !slices.Contains(ids, id) {
			delete(k.follow, id)
		}
	}
	k.watching.Store(int32(len(ids)))
	if len(ids) == 0 {
		return
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		f := k.follow[id]
		if f == nil {
			f = &followed{}
			k.follow[id] = f
		}
		k.arm(id, f) // before the read, so that no change falls between
		keys[i] = k.c.prefix + markerKey(id)
	}
	ctx, cancel := k.ctx()
	defer cancel()
	vals, err := k.c.guard.s.MGet(ctx, keys)
	if err != nil {
		return
	}
	now := k.c.fleet.clock.now()
	for i, b := range vals {
		var m marker
		if b == nil || json.Unmarshal(b, &m) != nil {
			continue
		}
		f := k.follow[ids[i]]
		switch {
		case !f.known || m.Seq < f.seen:
			f.seen, f.known = m.Seq, true
		case m.Seq > f.seen && now.Sub(time.Unix(0, m.At)) > k.missAfter:
			k.missed.Add(m.Seq - f.seen)
			f.seen = m.Seq
		}
	}
}

// stats returns the canary's figures.
func (k *canary) stats() CoherenceStats {
	clock := k.c.fleet.clock
	return CoherenceStats{
		Interval: k.interval, MissAfter: k.missAfter,
		Written: k.written.Load(), Seen: k.seen.Load(), Missed: k.missed.Load(),
		Watching: int(k.watching.Load()), Lag: k.lag.summary(time.Now().UnixNano()),
		ClockOffset: clock.offset(), ClockUncertainty: time.Duration(clock.uncert.Load()),
	}
}

// Coherence returns the coherence canary's figures, and false when the
// canary is off (Options.Canary).
func (c *Cache) Coherence() (CoherenceStats, bool) {
	if c.canary == nil {
		return CoherenceStats{}, false
	}
	return c.canary.stats(), true
}
