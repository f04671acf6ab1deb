package warm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tiercache/tiercache"
)

// batcher collects a run's items into batches and writes them.
//
// Without a delay between batches, a batch is written in the background
// while the generator fills the next one, so that the client's work on one
// batch (encoding) overlaps Redis's on the others: at most four batches are
// in flight. A batch that shares a key with a batch in flight waits for it,
// so that a key written twice keeps its last value.
type batcher struct {
	r    *Runner
	s    Strategy
	ctx  context.Context
	res  *Result
	buf  []tiercache.Item
	err  error // set once the run must stop; yield returns it from then on
	done bool  // the generator returned

	pending []*write         // batches being written in the background, oldest first
	keys    map[string]int   // how many pending batches hold each key
	spare   []tiercache.Item // a free buffer for the next batch
}

// maxInFlight is how many batches a run without a delay writes at once.
const maxInFlight = 4

// write is one batch being written, and its outcome.
type write struct {
	items   []tiercache.Item
	done    chan struct{}
	written int64
	failed  int64
	keyErr  error
	err     error // the error that ends the run
}

// execute runs s's generator to the end, or until ctx ends or a batch
// fails, and fills res.
func (r *Runner) execute(ctx context.Context, s Strategy, res Result) Result {
	b := &batcher{r: r, s: s, ctx: ctx, res: &res, buf: make([]tiercache.Item, 0, s.BatchSize)}
	err := b.generate()
	b.done = true
	switch {
	case b.err != nil:
		// The root cause, whatever the generator made of it.
		err = b.err
	case b.ctx.Err() != nil:
		err = cmp.Or(err, b.ctx.Err())
	default:
		// The items a failing generator produced before it failed are
		// as good as any: write them.
		err = cmp.Or(err, b.flush())
	}
	// The batches still in flight count, whatever ended the run.
	err = cmp.Or(err, b.drain())
	if err != nil {
		res.Err = &StrategyError{Strategy: s.Name, Err: err}
		// Items gathered but never sent are failures too.
		res.Failed += int64(len(b.buf))
		b.buf = nil
	}
	res.Duration = r.clock.Since(res.Started)
	return res
}

// generate calls the generator, turning a panic into an error.
func (b *batcher) generate() (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError(v)
		}
	}()
	return b.s.Generator(b.ctx, b.yield)
}

func (b *batcher) yield(it Item) error {
	switch {
	case b.err != nil:
		return b.err
	case b.done:
		return errors.New("warm: yield called after the generator returned")
	}
	if err := b.ctx.Err(); err != nil {
		b.err = err
		return err
	}
	if it.Err != nil {
		b.res.Failed++
		b.res.KeyErr = it.Err
		if it.Key != "" {
			b.res.KeyErr = fmt.Errorf("key %q: %w", it.Key, it.Err)
		}
		return nil
	}
	b.buf = append(b.buf, b.item(it))
	if len(b.buf) >= b.s.BatchSize {
		if err := b.flush(); err != nil {
			b.err = err
			return err
		}
	}
	return nil
}

// item applies the strategy's TTL and tags.
func (b *batcher) item(it Item) tiercache.Item {
	ti := tiercache.Item{Key: it.Key, Value: it.Value, TTL: it.TTL, Tags: b.s.Tags}
	if ti.TTL <= 0 {
		ti.TTL = b.s.TTL
	}
	if len(it.Tags) > 0 {
		ti.Tags = slices.Clone(b.s.Tags)
		for _, t := range it.Tags {
			if !slices.Contains(ti.Tags, t) {
				ti.Tags = append(ti.Tags, t)
			}
		}
	}
	return ti
}

// flush hands the buffered items to a write. With a delay between
// batches, it waits out the delay after the previous batch and writes them
// here; without one, it starts writing them in the background and returns
// once the batch before them is written. Either way it returns the error
// that ends the run, if a finished batch had one.
func (b *batcher) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	if b.s.DelayBetweenBatches > 0 {
		if b.res.Batches > 0 {
			if err := b.sleep(); err != nil {
				return err
			}
		}
		w := &write{items: b.buf}
		b.write(w)
		clear(b.buf) // drop references to values already written
		b.buf = b.buf[:0]
		return b.collect(w)
	}
	if len(b.pending) > 0 && b.conflicts() {
		if err := b.drain(); err != nil {
			return err
		}
	}
	w := &write{items: b.buf, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		b.write(w)
	}()
	b.pending = append(b.pending, w)
	if b.keys == nil {
		b.keys = make(map[string]int, len(w.items)*maxInFlight)
	}
	for _, it := range w.items {
		b.keys[it.Key]++
	}
	var err error
	if len(b.pending) >= maxInFlight {
		err = b.wait()
	}
	b.buf = b.spare[:0]
	if b.buf == nil {
		b.buf = make([]tiercache.Item, 0, b.s.BatchSize)
	}
	b.spare = nil
	return err
}

// conflicts reports whether a buffered key is in a batch in flight.
func (b *batcher) conflicts() bool {
	for _, it := range b.buf {
		if b.keys[it.Key] > 0 {
			return true
		}
	}
	return false
}

// drain waits for every batch in flight; it returns the first error.
func (b *batcher) drain() error {
	var first error
	for len(b.pending) > 0 {
		first = cmp.Or(first, b.wait())
	}
	return first
}

// wait waits for the oldest batch in flight, if any, and collects its
// outcome.
func (b *batcher) wait() error {
	if len(b.pending) == 0 {
		return nil
	}
	w := b.pending[0]
	b.pending = b.pending[1:]
	<-w.done
	for _, it := range w.items {
		if b.keys[it.Key]--; b.keys[it.Key] <= 0 {
			delete(b.keys, it.Key)
		}
	}
	err := b.collect(w)
	clear(w.items) // drop references to values already written
	b.spare = w.items[:0]
	return err
}

// write writes w's items. An item the cache rejects (bad key, tag or
// value) is counted as failed and the rest of the batch is written; any
// other error fails the whole batch and ends the run, since L2 is in
// trouble.
func (b *batcher) write(w *write) {
	items := w.items
	for len(items) > 0 {
		err := b.r.cache.SetItems(b.ctx, items)
		if err == nil {
			w.written += int64(len(items))
			break
		}
		i := rejected(err, items)
		if i < 0 {
			w.failed += int64(len(items))
			w.err = err
			break
		}
		w.failed++
		w.keyErr = err
		// w.items still names the batch's keys: drop the item from a copy.
		items = slices.Delete(slices.Clone(items), i, i+1)
	}
}

// collect adds w's outcome to the run's result, on the run's goroutine.
func (b *batcher) collect(w *write) error {
	b.res.Written += w.written
	b.res.Failed += w.failed
	if w.written > 0 {
		b.res.Batches++
	}
	if w.keyErr != nil {
		b.res.KeyErr = w.keyErr
	}
	if w.err != nil {
		return w.err
	}
	if f := b.r.opts.OnProgress; f != nil {
		f(Progress{Strategy: b.s.Name, Batches: b.res.Batches, Written: b.res.Written, Failed: b.res.Failed})
	}
	return nil
}

// rejected returns the index of the item SetItems refused by itself, or
// -1 when err is not about one item.
func rejected(err error, items []tiercache.Item) int {
	ke, ok := errors.AsType[*tiercache.KeyError](err)
	if !ok || errors.Is(err, tiercache.ErrClosed) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return -1
	}
	return slices.IndexFunc(items, func(it tiercache.Item) bool { return it.Key == ke.Key })
}

func (b *batcher) sleep() error {
	t := b.r.clock.NewTimer(b.s.DelayBetweenBatches)
	defer t.Stop()
	select {
	case <-b.ctx.Done():
		return b.ctx.Err()
	case <-t.Chan():
		return nil
	}
}
