package tiercache

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tiercache/tiercache/internal/envelope"
	"github.com/tiercache/tiercache/internal/l2"
)

// The auto-recovery queue holds writes and invalidations that failed
// because L2 was unreachable, one per L2 key (the newest wins), and
// replays them in order once L2 answers again. It is bounded: when it is
// full, a new key is refused with ErrQueueFull, so nothing is dropped
// silently.
//
// It also remembers the invalidations L2 acknowledged recently. Redis
// replicates asynchronously, so a failover can lose them; after every lost
// link (which a failover always causes) they are queued again. Deleting a
// cache key or bumping a version twice is always safe: at worst a miss.

type opKind uint8

const (
	opSet opKind = iota + 1
	opDel
	opIncr
	opIncrSoft // a soft invalidation: adds softStep
)

// incr reports whether the op increments a version key.
func (k opKind) incr() bool { return k == opIncr || k == opIncrSoft }

type recOp struct {
	kind  opKind
	key   string // full L2 key
	value []byte
	ttl   time.Duration
	seq   uint64 // its record in the journal; 0 when not journaled
}

type recentInv struct {
	kind opKind
	key  string
	at   time.Time
}

type recovery struct {
	mu       sync.Mutex
	order    *list.List               // of *recOp, oldest first
	byKey    map[string]*list.Element // L2 key -> element
	max      int
	sets     int // queued Sets
	length   atomic.Int64
	overflow atomic.Uint64
	replayed atomic.Uint64
	stalled  atomic.Uint64 // replay attempts that found L2 unreachable
	wake     chan struct{}

	jnl      *journal   // nil without Options.RecoveryJournalDir
	replayMu sync.Mutex // one replay at a time: the loop's or Drain's

	window time.Duration
	recent []recentInv // acknowledged invalidations, oldest first
}

func newRecovery(max int, window time.Duration) *recovery {
	return &recovery{order: list.New(), byKey: map[string]*list.Element{}, max: max, wake: make(chan struct{}, 1), window: window}
}

// add queues op, replacing an older op on the same key. replace false
// keeps an existing op (used for failover replays, which are older than
// anything the caller queued since). It returns the journal record of the
// op it replaced, or 0.
func (r *recovery) add(op recOp, replace bool) (replaced uint64, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.byKey[op.key]; ok {
		if op.kind == opIncrSoft && el.Value.(*recOp).kind == opIncr {
			// A queued hard invalidation covers a soft one.
			return op.seq, nil
		}
		if replace {
			old := el.Value.(*recOp)
			r.countSet(old, -1)
			r.order.Remove(el)
			r.byKey[op.key] = r.order.PushBack(&op)
			r.countSet(&op, 1)
			return old.seq, nil
		}
		return op.seq, nil
	}
	if r.order.Len() >= r.max {
		r.overflow.Add(1)
		return 0, fmt.Errorf("%w (%d operations waiting)", ErrQueueFull, r.order.Len())
	}
	r.byKey[op.key] = r.order.PushBack(&op)
	r.countSet(&op, 1)
	r.length.Store(int64(r.order.Len()))
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return 0, nil
}

// front returns the oldest op without removing it.
func (r *recovery) front() *recOp {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el := r.order.Front(); el != nil {
		return el.Value.(*recOp)
	}
	return nil
}

// done removes op if it is still the queued op for its key, and marks
// it done in the journal.
func (r *recovery) done(op *recOp) {
	r.mu.Lock()
	if el, ok := r.byKey[op.key]; ok && el.Value.(*recOp) == op {
		r.order.Remove(el)
		delete(r.byKey, op.key)
		r.countSet(op, -1)
	}
	r.length.Store(int64(r.order.Len()))
	seq := op.seq
	r.mu.Unlock()
	if r.jnl != nil && seq != 0 {
		r.jnl.done(seq)
	}
}

// counts returns the number of queued ops and how many of them the
// journal holds.
func (r *recovery) counts() (queued, journaled int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for el := r.order.Front(); el != nil; el = el.Next() {
		if el.Value.(*recOp).seq != 0 {
			journaled++
		}
	}
	return r.order.Len(), journaled
}

// journalRest journals the queued ops the journal does not hold yet (a
// journal write failed when they were queued), with one fsync. It returns
// the journal's error.
func (r *recovery) journalRest() error {
	r.mu.Lock()
	var rest []*recOp
	for el := r.order.Front(); el != nil; el = el.Next() {
		if op := el.Value.(*recOp); op.seq == 0 {
			rest = append(rest, op)
		}
	}
	r.mu.Unlock()
	if len(rest) == 0 || r.jnl == nil {
		return nil
	}
	ops := make([]recOp, len(rest))
	for i, op := range rest {
		ops[i] = recOp{kind: op.kind, key: op.key}
	}
	seqs, err := r.jnl.add(ops)
	if err != nil {
		return err
	}
	var stale []uint64 // ops applied or replaced meanwhile
	r.mu.Lock()
	for i, op := range rest {
		if el, ok := r.byKey[op.key]; ok && el.Value.(*recOp) == op && op.seq == 0 {
			op.seq = seqs[i]
		} else {
			stale = append(stale, seqs[i])
		}
	}
	r.mu.Unlock()
	if len(stale) > 0 {
		r.jnl.done(stale...)
	}
	return nil
}

// pending reports whether key has a queued operation.
func (r *recovery) pending(key string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.byKey[key]
	return ok
}

// remember records an acknowledged invalidation for failover replay.
func (r *recovery) remember(kind opKind, keys []string, now time.Time) {
	if r.window <= 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cut := 0
	for cut < len(r.recent) && now.Sub(r.recent[cut].at) > r.window {
		cut++
	}
	r.recent = r.recent[cut:]
	for _, k := range keys {
		if len(r.recent) >= r.max {
			r.recent = r.recent[1:]
		}
		r.recent = append(r.recent, recentInv{kind: kind, key: k, at: now})
	}
}

// recentOps returns the invalidations acknowledged within the window.
func (r *recovery) recentOps(now time.Time) []recOp {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []recOp
	for _, ri := range r.recent {
		if now.Sub(ri.at) <= r.window {
			out = append(out, recOp{kind: ri.kind, key: ri.key})
		}
	}
	return out
}

// unavailable reports whether err means L2 could not be reached.
func unavailable(err error) bool { return errors.Is(err, l2.ErrUnavailable) }

// queueOps queues ops after an L2 failure; it returns an error matching
// ErrQueued, or ErrQueueFull (with cause) when the queue is disabled or
// full. Version keys among the ops stay locally invalid until replayed.
// With a journal, the ops are on disk before it returns ErrQueued; when
// the journal cannot be written, the error matches ErrJournal and the ops
// are not queued.
func (c *Cache) queueOps(cause error, ops []recOp) error {
	if c.rec == nil {
		return cause
	}
	if c.rec.jnl != nil {
		seqs, err := c.rec.jnl.add(ops)
		if err != nil {
			c.logger.Error("tiercache: recovery journal write failed; operation not queued", "err", err)
			return fmt.Errorf("%w; %w", err, cause)
		}
		for i := range ops {
			ops[i].seq = seqs[i]
		}
	}
	for i, op := range ops {
		if op.kind.incr() {
			c.vers.markPending(op.key, op.kind == opIncrSoft)
		}
		replaced, err := c.rec.add(op, true)
		if replaced != 0 && c.rec.jnl != nil {
			c.rec.jnl.done(replaced)
		}
		if err != nil {
			if c.rec.jnl != nil {
				for _, o := range ops[i:] {
					c.rec.jnl.done(o.seq)
				}
			}
			if op.kind.incr() && !c.rec.pending(op.key) {
				// Not queued, not applied: its version is not pending.
				c.vers.clearPending(op.key)
			}
			c.logger.Error("tiercache: recovery queue full; operation not queued", "err", err)
			return fmt.Errorf("%w; %w", err, cause)
		}
	}
	return fmt.Errorf("%w: %w", ErrQueued, cause)
}

// sendOrQueue is the one way a write, delete or increment reaches L2 or,
// when L2 is unreachable, the recovery queue. When behind is true an
// earlier queued operation must be applied first, so nothing is sent and
// the operation goes behind it; otherwise send runs. after, if not nil,
// runs with the outcome either way (L1 and flight bookkeeping, before the
// queue can replay anything). When the outcome is that L2 is unreachable,
// ops (if not nil) builds the operations to queue, and the result matches
// ErrQueued, or ErrQueueFull when they do not fit.
func (c *Cache) sendOrQueue(behind bool, send func() error, after func(error), ops func() []recOp) error {
	var err error
	if behind {
		err = fmt.Errorf("%w: an earlier operation it must follow is queued", ErrUnavailable)
	} else {
		err = send()
	}
	if after != nil {
		after(err)
	}
	if err != nil {
		c.counter.errors.Add(1)
		if ops != nil && unavailable(err) {
			err = c.queueOps(err, ops())
		}
	}
	return err
}

// poke wakes the replay loop when operations wait: L2 has just answered
// one, so it is likely back.
func (r *recovery) poke() {
	if r.length.Load() > 0 {
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// replayMinGap is the least time between two replay attempts, however
// often the loop is woken.
const replayMinGap = 50 * time.Millisecond

// replayLoop applies queued operations while the cache is open. It tries
// again after a backoff that doubles up to a second while L2 fails, and at
// once (but at most every replayMinGap) when an operation is queued or L2
// answers another operation.
func (c *Cache) replayLoop() {
	defer c.bg.Done()
	backoff := replayMinGap
	t := time.NewTimer(backoff)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.rec.wake:
		case <-t.C:
		}
		if gap := replayMinGap - time.Since(last); gap > 0 {
			t.Reset(gap)
			continue
		}
		last = time.Now()
		if _, ok := c.replay(c.ctx); ok {
			backoff = replayMinGap
		} else {
			c.rec.stalled.Add(1)
			backoff = min(backoff*2, time.Second)
		}
		t.Reset(backoff)
	}
}

// replay applies queued ops in order until the queue is empty (ok) or L2
// fails or ctx ends (not ok). It returns how many it applied, and logs
// one line for a run that applied or dropped any.
func (c *Cache) replay(ctx context.Context) (applied int, ok bool) {
	c.rec.replayMu.Lock()
	defer c.rec.replayMu.Unlock()
	start := time.Now()
	dropped := 0
	defer func() {
		if applied+dropped > 0 {
			c.logger.Info("tiercache: recovery queue replayed", "namespace", c.opts.Namespace,
				"applied", applied, "dropped", dropped, "remaining", int(c.rec.length.Load()),
				"took", time.Since(start).Round(time.Microsecond))
		}
	}()
	for {
		op := c.rec.front()
		if op == nil {
			return applied, true
		}
		err := c.applyOp(ctx, op)
		if err != nil && (unavailable(err) || ctx.Err() != nil) {
			return applied, false
		}
		if err != nil {
			// L2 answered and refused: retrying cannot help. Say so loudly.
			dropped++
			c.counter.replayFailed.Add(1)
			c.logger.Error("tiercache: a queued operation was refused by L2 and dropped", "key", truncKey(op.key), "err", err)
		} else {
			applied++
			c.rec.replayed.Add(1)
			c.replayedInvalidation(op)
			if op.kind != opSet {
				c.rec.remember(op.kind, []string{op.key}, c.opts.Now())
			}
		}
		c.rec.done(op)
		if op.kind.incr() && !c.rec.pending(op.key) {
			c.vers.clearPending(op.key)
		}
		if (op.kind == opSet || op.kind == opDel) && len(op.key) > len(c.prefix) && op.key[:len(c.prefix)] == c.prefix {
			if c.l1 != nil {
				c.l1.Invalidate(op.key[len(c.prefix):])
			}
			c.forgetFlight(op.key[len(c.prefix):])
		}
	}
}

// applyOp sends one queued op to L2.
func (c *Cache) applyOp(ctx context.Context, op *recOp) error {
	ctx, cancel := context.WithTimeout(ctx, max(c.opts.OperationTimeout, time.Second))
	defer cancel()
	switch op.kind {
	case opSet:
		value, err := c.restamp(ctx, op.value)
		if err != nil {
			return err
		}
		return c.store.Set(ctx, op.key, value, op.ttl)
	case opDel:
		return c.store.Del(ctx, op.key)
	case opIncrSoft:
		_, err := c.store.Incr(ctx, []string{op.key}, softStep)
		return err
	default:
		_, err := c.store.Incr(ctx, []string{op.key}, 1)
		return err
	}
}

// restamp gives a queued value the namespace and tag versions current
// now. A queued Set takes effect when it is replayed: the versions it was
// stamped with when it was queued may be older than an invalidation
// replayed before it (then the value would read as invalid forever), or,
// after a cold start without Redis, never have been read at all. An
// invalidation queued after the Set is replayed after it, so it still
// removes the value.
func (c *Cache) restamp(ctx context.Context, b []byte) ([]byte, error) {
	env, err := envelope.Decode(b, c.opts.MaxValueSize)
	if err != nil {
		// The cache encoded these bytes itself; store them as they are.
		return b, nil
	}
	tags := make([]string, len(env.Tags))
	for i, t := range env.Tags {
		tags[i] = t.Tag
	}
	ns, tv, err := c.vers.current(ctx, c, tags, createVersions)
	if err != nil {
		return nil, err
	}
	same := env.NsVersion == ns
	env.NsVersion = ns
	for i := range env.Tags {
		same = same && env.Tags[i].Version == tv[i]
		env.Tags[i].Version = tv[i]
	}
	if same {
		return b, nil
	}
	return envelope.Encode(nil, &env, max(c.opts.CompressAbove, 0))
}

// replayRecent re-queues recently acknowledged invalidations after a lost
// link: if the link was lost to a failover, the new master may not have
// them. With a journal, those not queued already are journaled first, all
// with one fsync, so that a stop or a crash does not lose them either.
// When the journal cannot be written they are queued in memory only, and
// Close says so.
func (c *Cache) replayRecent() {
	if c.rec == nil || c.closed.Load() {
		return
	}
	ops := c.rec.notQueued(c.rec.recentOps(c.opts.Now()))
	if len(ops) == 0 {
		return
	}
	jnl := c.rec.jnl
	if jnl != nil {
		seqs, err := jnl.add(ops)
		if err != nil {
			c.logger.Error("tiercache: recovery journal write failed; invalidations re-queued after a lost link are kept in memory only",
				"namespace", c.opts.Namespace, "operations", len(ops), "err", err)
			jnl = nil
		}
		for i := range seqs {
			ops[i].seq = seqs[i]
		}
	}
	for _, op := range ops {
		if op.kind.incr() {
			c.vers.markPending(op.key, op.kind == opIncrSoft)
		}
		// replace false: an operation queued since (by a caller, or by
		// another lost link) is newer; this one is then not queued, and
		// its journal record is marked done at once.
		skipped, err := c.rec.add(op, false)
		if err != nil {
			c.logger.Error("tiercache: recovery queue full; invalidation not replayed after a lost link", "key", truncKey(op.key), "err", err)
			skipped = op.seq
		}
		if jnl != nil && skipped != 0 {
			jnl.done(skipped)
		}
	}
}

// notQueued returns the ops whose keys have no queued operation, one per
// key.
func (r *recovery) notQueued(ops []recOp) []recOp {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[string]bool, len(ops))
	out := ops[:0]
	for _, op := range ops {
		if _, ok := r.byKey[op.key]; !ok && !seen[op.key] {
			seen[op.key] = true
			out = append(out, op)
		}
	}
	return out
}

// countSet keeps r.sets; r.mu is held.
func (r *recovery) countSet(op *recOp, d int) {
	if op.kind == opSet {
		r.sets += d
	}
}

// incrMustWait reports whether version increments must queue behind the
// operations waiting in r: one of their own keys is queued, or a Set is,
// which may carry the tag (or sit in the namespace) they invalidate. Sent
// at once, the increment would land before that older Set, and the Set,
// stamped with the versions current when it is replayed, would outlive
// the invalidation that followed it.
func (r *recovery) incrMustWait(keys []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sets > 0 || r.queuedAnyLocked(keys)
}

// queuedAny reports whether any of the L2 keys has a queued operation.
func (r *recovery) queuedAny(keys []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queuedAnyLocked(keys)
}

// queuedAnyLocked is queuedAny with r.mu held.
func (r *recovery) queuedAnyLocked(keys []string) bool {
	for _, k := range keys {
		if _, ok := r.byKey[k]; ok {
			return true
		}
	}
	return false
}

// queuedWrites is queuedAny for the keys of encoded writes.
func (r *recovery) queuedWrites(encs []encoded, prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range encs {
		if _, ok := r.byKey[prefix+e.key]; ok {
			return true
		}
	}
	return false
}
