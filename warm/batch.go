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
type batcher struct {
	r    *Runner
	s    Strategy
	ctx  context.Context
	res  *Result
	buf  []tiercache.Item
	err  error // set once the run must stop; yield returns it from then on
	done bool  // the generator returned
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

// flush waits out the delay after the previous batch, then writes the
// buffered items. An item the cache rejects (bad key, tag or value) is
// counted as failed and the rest of the batch is written; any other error
// fails the whole batch and ends the run, since L2 is in trouble.
func (b *batcher) flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	if b.res.Batches > 0 && b.s.DelayBetweenBatches > 0 {
		if err := b.sleep(); err != nil {
			return err
		}
	}
	items := b.buf
	for len(items) > 0 {
		err := b.r.cache.SetItems(b.ctx, items)
		if err == nil {
			b.res.Written += int64(len(items))
			b.res.Batches++
			break
		}
		i := rejected(err, items)
		if i < 0 {
			b.res.Failed += int64(len(items))
			clear(b.buf)
			b.buf = b.buf[:0]
			return err
		}
		b.res.Failed++
		b.res.KeyErr = err
		items = slices.Delete(items, i, i+1)
	}
	clear(b.buf) // drop references to values already written
	b.buf = b.buf[:0]
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
