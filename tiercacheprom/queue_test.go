package tiercacheprom

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestRecorder_RecoveryQueue: with Redis stopped, writes wait in the
// recovery queue until it is full and then overflow, which the alert
// TiercacheRecoveryQueueOverflowing watches; once Redis is back they are
// replayed and the queue empties.
func TestRecorder_RecoveryQueue(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	c, reg := newCache(t, tiercache.Options{
		Redis:             tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		Retries:           -1,
		OperationTimeout:  500 * time.Millisecond,
		RecoveryQueueSize: 2,
	})
	ctx := context.Background()
	if err := c.Set(ctx, "before", 1); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	for i, want := range []error{tiercache.ErrQueued, tiercache.ErrQueued, tiercache.ErrQueueFull} {
		if err := c.Set(ctx, fmt.Sprint("k", i), i); !errors.Is(err, want) {
			t.Fatalf("Set %d with Redis stopped: %v, want %v", i, err, want)
		}
	}
	wantValue(t, reg, 2, "tiercache_recovery_queue_length")
	wantValue(t, reg, 1, "tiercache_recovery_queue_overflows_total")
	wantValue(t, reg, 0, "tiercache_recovery_replayed_total")

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, _ := value(t, reg, "tiercache_recovery_replayed_total")
		q, _ := value(t, reg, "tiercache_recovery_queue_length")
		if n == 2 && q == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Redis came back: %v replayed, %v still queued", n, q)
		}
		time.Sleep(20 * time.Millisecond) // pacing the poll
	}
	wantValue(t, reg, 0, "tiercache_recovery_replay_failed_total")
	var v int
	if err := c.Get(ctx, "k1", &v); err != nil || v != 1 {
		t.Fatalf("replayed write: %v %v", v, err)
	}
}
