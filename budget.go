package tiercache

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tiercache/tiercache/internal/l2"
)

// One time budget per read (Options.ReadTimeout).
//
// Without it, a read's L2 part may take OperationTimeout per attempt times
// the attempts, plus backoff, plus the version checks: about 3 s with the
// defaults when Redis is frozen, until the breaker opens. With it, the L2
// part of one read call runs under one deadline, ReadTimeout from its first
// L2 operation: each attempt gets what is left of it (or OperationTimeout,
// when that is less), the backoff between attempts ends with it, and when it
// is spent the read fails as when L2 is unreachable, so Get and Fetch answer
// with a fail-safe stale value when they have one.
//
// The deadline is taken only when the read needs L2: an L1 hit pays
// nothing. Fetch and FetchMany give the write of what their loader
// returned a budget of its own (fillContext), so that a slow loader does
// not spend it. Reads whose context cannot be cancelled share deadlines, as
// operations do (see deadline.go).

// budgetError is the cause of a read whose budget was spent. It matches
// l2.ErrUnavailable (and so ErrUnavailable).
type budgetError struct{ d time.Duration }

func (e *budgetError) Error() string {
	return fmt.Sprintf("no answer within the read budget of %v (ReadTimeout)", e.d)
}

func (e *budgetError) Unwrap() error { return l2.ErrUnavailable }

// newReadBudgets returns the shared deadlines of reads, nil without a
// budget.
func newReadBudgets(d time.Duration) *sharedDeadlines {
	if d <= 0 {
		return nil
	}
	b := newSharedDeadlines(d)
	b.cause = &budgetError{d: d}
	return b
}

// spentBudget returns the budgetError when ctx ended because its read
// budget was spent, and nil otherwise (it is still running, or the caller
// ended it).
func spentBudget(ctx context.Context) error {
	if ctx.Err() == nil {
		return nil
	}
	var b *budgetError
	if cause := context.Cause(ctx); errors.As(cause, &b) {
		return cause
	}
	return nil
}

// fillContext gives the writes that cache what a loader returned (Fetch,
// FetchMany) a read budget of their own: the loader's time is not L2's,
// and a fill that cannot finish in time is dropped, as when L2 is
// unreachable.
func (c *Cache) fillContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.budgets == nil {
		return ctx, noCancel
	}
	return c.budgets.opContext(ctx)
}

// readBudget gives the L2 part of one read call its context, created on
// first use. Keep it on the stack: rb := c.readBudget(ctx); defer
// rb.release().
type readBudget struct {
	c      *Cache
	ctx    context.Context
	cancel context.CancelFunc // nil until ctx is bounded
}

func (c *Cache) readBudget(ctx context.Context) readBudget {
	return readBudget{c: c, ctx: ctx}
}

// get returns the context L2 operations of this read run under.
func (rb *readBudget) get() context.Context {
	if rb.cancel == nil && rb.c.budgets != nil {
		rb.ctx, rb.cancel = rb.c.budgets.opContext(rb.ctx)
	}
	return rb.ctx
}

// release frees the read's deadline.
func (rb *readBudget) release() {
	if rb.cancel != nil {
		rb.cancel()
	}
}
