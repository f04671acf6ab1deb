package tiercache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Redis's clock. The fleet's heartbeats and the canary's markers carry
// times that instances on different hosts compare, so they are stamped on
// one clock: Redis's (TIME; on Cluster, the master with the lowest
// address). Each instance estimates the offset of Redis's clock from its
// own as NTP does: it reads its clock (t0), sends TIME (r), reads its clock
// again (t1), and takes offset = r - (t0+t1)/2, exact to within half the
// round trip (t1-t0)/2, its uncertainty. Of the last clockSamples reads,
// the one with the shortest round trip wins. On the in-memory store the
// offset is zero.

// clockSamples is how many TIME reads the offset is chosen from.
const clockSamples = 8

// timeSource is a store that can read Redis's clock.
type timeSource interface {
	Time(ctx context.Context) (time.Time, error)
}

// redisClock is this instance's estimate of Redis's clock.
type redisClock struct {
	mu      sync.Mutex
	samples [clockSamples]struct{ offset, rtt time.Duration }
	n, next int

	off    atomic.Int64 // offset in nanoseconds: Redis's clock minus ours
	uncert atomic.Int64 // half the round trip of the sample chosen
	synced atomic.Bool
}

// offset returns Redis's clock minus ours.
func (k *redisClock) offset() time.Duration { return time.Duration(k.off.Load()) }

// now returns the time on Redis's clock.
func (k *redisClock) now() time.Time { return time.Now().Add(k.offset()) }

// add records one TIME read and chooses the offset again.
func (k *redisClock) add(offset, rtt time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.samples[k.next] = struct{ offset, rtt time.Duration }{offset, rtt}
	k.next = (k.next + 1) % clockSamples
	k.n = min(k.n+1, clockSamples)
	best := k.samples[0]
	for _, s := range k.samples[1:k.n] {
		if s.rtt < best.rtt {
			best = s
		}
	}
	k.off.Store(int64(best.offset))
	k.uncert.Store(int64(best.rtt / 2))
	k.synced.Store(true)
}

// syncClock reads Redis's clock once and updates the fleet's estimate.
func (c *Cache) syncClock(ctx context.Context) error {
	k := c.fleet.clock
	ts, ok := c.guard.s.(timeSource)
	if !ok {
		k.synced.Store(true) // the in-memory store's clock is ours
		return nil
	}
	t0 := time.Now()
	r, err := ts.Time(ctx)
	if err != nil {
		return err
	}
	t1 := time.Now()
	rtt := t1.Sub(t0)
	mid := t0.Add(rtt / 2)
	k.add(r.Sub(mid), rtt)
	return nil
}
