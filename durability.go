package tiercache

import (
	"context"
	"time"
)

// DrainReport is what Drain saw: operations applied while it ran (by it
// or by the background replay), and operations still queued when it
// returned. Journaled counts the kept operations the recovery journal
// holds for the next start: all of them, unless there is no journal (0)
// or a journal write failed (logged at ERROR) for some of them.
type DrainReport struct {
	Applied   int
	Kept      int
	Journaled int
}

// Drain applies the recovery queue until it is empty or ctx ends, retrying
// while L2 is unreachable. Call it before Close when stopping: what it
// cannot apply stays queued and, with Options.RecoveryJournalDir, in the
// journal, which the next New with the same directory replays. It returns
// ctx's error when ctx ended with operations kept, and ErrClosed after
// Close.
func (c *Cache) Drain(ctx context.Context) (DrainReport, error) {
	if c.rec == nil {
		if c.closed.Load() {
			return DrainReport{}, ErrClosed
		}
		return DrainReport{}, nil
	}
	if c.closed.Load() {
		rep := DrainReport{}
		rep.Kept, rep.Journaled = c.rec.counts()
		return rep, ErrClosed
	}
	before := c.rec.replayed.Load()
	backoff := replayMinGap
	t := time.NewTimer(0)
	defer t.Stop()
	for c.rec.length.Load() > 0 {
		_, ok := c.replay(ctx)
		if ok {
			backoff = replayMinGap
			continue
		}
		if ctx.Err() == nil {
			t.Reset(backoff)
			backoff = min(backoff*2, time.Second)
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
			}
		}
		if c.rec.jnl != nil {
			if err := c.rec.journalRest(); err != nil {
				c.logger.Error("tiercache: recovery journal write failed", "namespace", c.opts.Namespace, "err", err)
			}
		}
		rep := DrainReport{Applied: int(c.rec.replayed.Load() - before)}
		rep.Kept, rep.Journaled = c.rec.counts()
		return rep, errorf("tiercache: drain: %d operations kept (%d in the recovery journal): %w", rep.Kept, rep.Journaled, ctx.Err())
	}
	return DrainReport{Applied: int(c.rec.replayed.Load() - before)}, nil
}

// startJournal opens the recovery journal and queues what it holds, before
// any read or write: their keys are not served as fresh until applied.
func (c *Cache) startJournal() error {
	if c.opts.RecoveryJournalDir == "" || c.rec == nil {
		return nil
	}
	j, ops, err := openJournal(journalConfig{
		dir:       c.opts.RecoveryJournalDir,
		namespace: c.opts.Namespace,
		maxOps:    c.rec.max,
		logger:    c.logger,
		recorder:  c.obs.rec,
		now:       c.opts.Now,
	})
	if err != nil {
		return err
	}
	c.rec.jnl = j
	for _, op := range ops {
		if op.kind.incr() {
			c.vers.markPending(op.key, op.kind == opIncrSoft)
		}
		if _, err := c.rec.add(recOp{kind: op.kind, key: op.key, seq: op.seq}, true); err != nil {
			j.close()
			c.rec.jnl = nil
			return err // cannot happen: openJournal keeps ops within the queue's size
		}
	}
	if len(ops) > 0 {
		c.logger.Info("tiercache: recovery journal restored; its keys are not served until applied",
			"namespace", c.opts.Namespace, "operations", len(ops), "path", j.path)
		c.obs.rec.RecordJournalRestored(len(ops))
	}
	return nil
}

// closeJournal releases the journal after the replay loop stopped. The
// operations still queued stay in it; the log line counts them, and says
// how many only memory held (lost at exit).
func (c *Cache) closeJournal() error {
	if c.rec == nil {
		return nil
	}
	if c.rec.jnl == nil {
		if n := c.rec.length.Load(); n > 0 {
			c.logger.Warn("tiercache: closing with queued operations; without a recovery journal they are lost",
				"namespace", c.opts.Namespace, "operations", n)
		}
		return nil
	}
	jerr := c.rec.journalRest()
	n, journaled := c.rec.counts()
	switch {
	case n > journaled:
		c.logger.Error("tiercache: closing with queued operations the recovery journal could not keep; they are lost",
			"namespace", c.opts.Namespace, "operations", n, "journaled", journaled, "lost", n-journaled,
			"path", c.rec.jnl.path, "err", jerr)
	case n > 0:
		c.logger.Warn("tiercache: closing with queued operations; the recovery journal keeps them for the next start",
			"namespace", c.opts.Namespace, "operations", n, "path", c.rec.jnl.path)
	}
	return c.rec.jnl.close()
}

// queued reports whether key (without the namespace) has an operation in
// the recovery queue: until it is applied, reads treat the key as a miss,
// whatever L1 or L2 hold.
func (c *Cache) queued(key string) bool {
	return c.rec != nil && c.rec.length.Load() > 0 && c.rec.pending(c.prefix+key)
}
