package tiercache

import (
	"sync/atomic"
	"time"
)

// counters are the cache's own statistics.
type counters struct {
	errors, corrupt                 atomic.Uint64
	loads, loadErrors               atomic.Uint64
	invalidations, invalidationsAll atomic.Uint64
	linkSuspects, linkResumes       atomic.Uint64
	tagInvalidations                atomic.Uint64
	replayFailed                    atomic.Uint64
	eagerRefreshes, lockWaits       atomic.Uint64
	lockWakeups                     atomic.Uint64 // waits ended by the key's invalidation
}

// Counters is a snapshot of the cache's counters.
type Counters struct {
	// HitsL1, HitsL2, Misses and StaleServed are Requests summed over
	// the operations: one per Get, Lookup or Fetch call, one per distinct
	// key of GetMany, LookupMany and FetchMany.
	HitsL1        uint64 // reads answered by L1
	HitsL2        uint64 // reads answered by L2
	Misses        uint64 // reads that found nothing (Fetch: the loader answered)
	Errors        uint64 // L2 operations that failed
	Corrupt       uint64 // stored values that could not be decoded (each also a miss)
	Loads         uint64 // loader calls
	LoadErrors    uint64 // loader calls that failed (ErrNotFound excluded)
	Invalidations uint64 // keys invalidated by Redis
	LinkResets    uint64 // times every L1 entry lost freshness at once
	LinkSuspects  uint64 // of those, times L2 did not answer the liveness probe in time
	// LinkResumes counts, of LinkSuspects, the times the late answer came
	// on the same link within the grace: L1 served again as it was.
	LinkResumes  uint64
	TagBumps     uint64 // tag and namespace versions this instance incremented
	StaleServed  uint64 // fail-safe stale values served
	EagerRefresh uint64 // background refreshes started by eager refresh
	LockWaits    uint64 // Fetches that waited for another instance's load
	Breaker      BreakerState
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
		Errors:         c.counter.errors.Load(),
		Corrupt:        c.counter.corrupt.Load(),
		Loads:          c.counter.loads.Load(),
		LoadErrors:     c.counter.loadErrors.Load(),
		Invalidations:  c.counter.invalidations.Load(),
		LinkResets:     c.counter.invalidationsAll.Load(),
		LinkSuspects:   c.counter.linkSuspects.Load(),
		LinkResumes:    c.counter.linkResumes.Load(),
		TagBumps:       c.counter.tagInvalidations.Load(),
		EagerRefresh:   c.counter.eagerRefreshes.Load(),
		LockWaits:      c.counter.lockWaits.Load(),
		Breaker:        c.guard.state(),
		BreakerOpenFor: c.guard.openFor(time.Now()),
		BreakerRefused: c.guard.refused.Load(),
		ReplayFailed:   c.counter.replayFailed.Load(),
		Requests:       c.obs.reqs.snapshot(),
	}
	// One set of counters: the totals are the sums of Requests, so that
	// Counters, Stats and /metrics classify every answer the same way.
	s.HitsL1 = s.Requests.Total(ResultHitL1)
	s.HitsL2 = s.Requests.Total(ResultHitL2)
	s.Misses = s.Requests.Total(ResultMiss)
	s.StaleServed = s.Requests.Total(ResultStale)
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
