package tiercache

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// sharedDeadlines gives the L2 operations of a caller whose context can
// never be cancelled (context.Background, or one made with
// context.WithoutCancel) their OperationTimeout without a timer each:
// operations that start within the same grain share one context, created
// with a deadline of timeout+grain. Each operation's timeout is thus
// between timeout and timeout+grain. A context that can be cancelled gets
// a context.WithTimeout of its own, as it must end with its parent.
type sharedDeadlines struct {
	timeout, grain time.Duration
	cause          error     // what context.Cause reports when a deadline passes; nil: DeadlineExceeded
	start          time.Time // monotonic origin of "now"
	mu             sync.Mutex
	cur            atomic.Pointer[sharedDeadline]
}

type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc // released by the deadline's own timer
	until  time.Duration      // operations starting before this share ctx
}

func newSharedDeadlines(timeout time.Duration) *sharedDeadlines {
	grain := min(max(timeout/64, time.Millisecond), 10*time.Millisecond)
	return &sharedDeadlines{timeout: timeout, grain: grain, start: time.Now()}
}

// get returns a context whose deadline is at least timeout from now.
func (d *sharedDeadlines) get() context.Context {
	now := time.Since(d.start)
	if c := d.cur.Load(); c != nil && now < c.until {
		return c.ctx
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.cur.Load(); c != nil && now < c.until {
		return c.ctx
	}
	ctx, cancel := context.WithTimeoutCause(context.Background(), d.timeout+d.grain, d.cause)
	d.cur.Store(&sharedDeadline{ctx: ctx, cancel: cancel, until: now + d.grain})
	return ctx
}

// withValues is a shared deadline context that answers Value from the
// caller's context, so that tracing spans and other values still flow.
type withValues struct {
	context.Context // the shared deadline
	values          context.Context
}

func (c withValues) Value(key any) any { return c.values.Value(key) }

// opContext returns the context an L2 operation runs under, and its cancel.
func (d *sharedDeadlines) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Done() != nil {
		return context.WithTimeoutCause(ctx, d.timeout, d.cause)
	}
	shared := d.get()
	if ctx == context.Background() {
		return shared, noCancel
	}
	return withValues{Context: shared, values: ctx}, noCancel
}

func noCancel() {}
