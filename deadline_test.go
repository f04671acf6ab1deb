package tiercache

import (
	"context"
	"testing"
	"time"
)

// TestSharedDeadlines: an operation of a caller that cannot cancel gets a
// deadline between timeout and timeout+grain from its start, shared with
// the operations of the same grain, and keeps the caller's values; an
// operation of a caller that can cancel ends with it.
func TestSharedDeadlines(t *testing.T) {
	const timeout = 200 * time.Millisecond
	d := newSharedDeadlines(timeout)
	type key struct{}
	for _, tc := range []struct {
		name string
		ctx  context.Context
	}{
		{"background", context.Background()},
		{"values", context.WithValue(context.Background(), key{}, "v")},
		{"without cancel", context.WithoutCancel(context.WithValue(context.Background(), key{}, "v"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			octx, cancel := d.opContext(tc.ctx)
			defer cancel()
			dl, ok := octx.Deadline()
			if !ok {
				t.Fatal("no deadline")
			}
			// At least the timeout, at most one grain more (and the time
			// opContext itself took).
			if got := dl.Sub(start); got < timeout || got > timeout+d.grain+time.Millisecond {
				t.Fatalf("deadline %v after the start, want from %v to %v", got, timeout, timeout+d.grain)
			}
			if got, want := octx.Value(key{}), tc.ctx.Value(key{}); got != want {
				t.Fatalf("Value = %v, want %v", got, want)
			}
			if octx.Err() != nil {
				t.Fatalf("Err = %v before the deadline", octx.Err())
			}
			select {
			case <-octx.Done():
			case <-time.After(timeout + d.grain + time.Second):
				t.Fatal("the deadline never fired")
			}
			if octx.Err() != context.DeadlineExceeded {
				t.Fatalf("Err = %v, want DeadlineExceeded", octx.Err())
			}
		})
	}
	t.Run("cancellable", func(t *testing.T) {
		parent, stop := context.WithCancel(context.Background())
		octx, cancel := d.opContext(parent)
		defer cancel()
		stop()
		select {
		case <-octx.Done():
		case <-time.After(time.Second):
			t.Fatal("the operation did not end with its caller")
		}
		if octx.Err() != context.Canceled {
			t.Fatalf("Err = %v, want Canceled", octx.Err())
		}
	})
	t.Run("shared within a grain", func(t *testing.T) {
		a, _ := d.opContext(context.Background())
		b, _ := d.opContext(context.Background())
		da, _ := a.Deadline()
		db, _ := b.Deadline()
		if db.Sub(da) > d.grain {
			t.Fatalf("two operations started together have deadlines %v apart", db.Sub(da))
		}
	})
}
