package server

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// lazyTimeout is context.WithTimeout(parent, d) made on first use. A
// read answered from L1 never asks its context anything, so it costs no
// timer and no allocation but the lazyTimeout; a read that goes to Redis
// gets the real deadline context the moment the cache first asks for
// Done or Err. Deadline is known from the start and costs nothing.
type lazyTimeout struct {
	parent   context.Context
	deadline time.Time
	once     sync.Once
	ctx      atomic.Pointer[context.Context] // set once made
	cancel   context.CancelFunc
}

// withLazyTimeout returns the context; defer its stop as
// context.WithTimeout's cancel. (Returning l.stop as a function value
// would cost an allocation of its own.)
func withLazyTimeout(parent context.Context, d time.Duration) *lazyTimeout {
	return &lazyTimeout{parent: parent, deadline: time.Now().Add(d)}
}

// made returns the deadline context, making it on first use.
func (l *lazyTimeout) made() context.Context {
	l.once.Do(func() {
		ctx, cancel := context.WithDeadline(l.parent, l.deadline)
		l.cancel = cancel
		l.ctx.Store(&ctx)
	})
	return *l.ctx.Load()
}

// stop is the cancel function: it cancels the deadline context if it was
// made, and makes any later use see a cancelled context.
func (l *lazyTimeout) stop() {
	l.once.Do(func() { l.ctx.Store(&cancelled) })
	if l.cancel != nil {
		l.cancel()
	}
}

// cancelled is what a lazyTimeout stopped before first use answers.
var cancelled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func (l *lazyTimeout) Deadline() (time.Time, bool) {
	if d, ok := l.parent.Deadline(); ok && d.Before(l.deadline) {
		return d, true
	}
	return l.deadline, true
}

func (l *lazyTimeout) Done() <-chan struct{} { return l.made().Done() }

func (l *lazyTimeout) Err() error { return l.made().Err() }

// Value asks the deadline context once it is made, so that contexts
// derived from it find its cancellation as they would with
// context.WithTimeout's, and the parent before.
func (l *lazyTimeout) Value(key any) any {
	if p := l.ctx.Load(); p != nil && *p != cancelled {
		return (*p).Value(key)
	}
	return l.parent.Value(key)
}
