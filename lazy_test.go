package tiercache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestLazyConnect_Off: without LazyConnect, New still fails at once when
// nothing listens.
func TestLazyConnect_Off(t *testing.T) {
	addr := closedAddr(t)
	start := time.Now()
	c, err := New(Options{Redis: RedisOptions{Addrs: []string{addr}}, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		c.Close()
		t.Fatal("New succeeded without Redis")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("New took %v to fail", d)
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestLazyConnect_CloseBeforeConnect: a lazy cache that never reached
// Redis closes at once and leaves no goroutine behind.
func TestLazyConnect_CloseBeforeConnect(t *testing.T) {
	checkNoLeaks(t)
	logs := &logCapture{}
	c, err := New(Options{Redis: RedisOptions{Addrs: []string{closedAddr(t)}, LazyConnect: true}, Logger: slog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	logs.waitLine(t, 5*time.Second, "connecting in the background")
	start := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close took %v", d)
	}
	if c.Connected() {
		t.Error("Connected after Close without Redis")
	}
}

// lazyBeforeRedis checks a lazy cache while its Redis is down: New
// succeeded, reads and writes fail fast as unreachable, writes are queued,
// Health is unhealthy.
func lazyBeforeRedis(t *testing.T, c *Cache) {
	t.Helper()
	ctx := context.Background()
	if c.Connected() {
		t.Fatal("Connected before Redis started")
	}
	var v int
	for i := range 10 {
		start := time.Now()
		err := c.Get(ctx, "k"+strconv.Itoa(i), &v)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Get before Redis: %v, want ErrUnavailable", err)
		}
		// Failing fast means not waiting for a dial or an operation
		// timeout: the bound is half of OperationTimeout (500 ms by
		// default), far above a fast failure even on a busy machine and
		// below any wait for Redis.
		if d := time.Since(start); d >= c.opts.OperationTimeout/2 {
			t.Errorf("Get before Redis took %v, want it to fail fast (under %v)", d, c.opts.OperationTimeout/2)
		}
	}
	if err := c.Set(ctx, "queued", 42); !errors.Is(err, ErrQueued) {
		t.Fatalf("Set before Redis: %v, want ErrQueued", err)
	}
	if h := c.Health(ctx); h.Status != Unhealthy || h.Checks.Connectivity.Status != CheckFail {
		t.Errorf("Health before Redis: %s, connectivity %+v; want unhealthy", h.Status, h.Checks.Connectivity)
	}
}

// lazyAfterRedis waits until the lazy cache works with the Redis that
// appeared: the queued write applied, reads and writes served, and
// another instance's write invalidating this one's L1 (client tracking).
func lazyAfterRedis(t *testing.T, c, other *Cache) {
	t.Helper()
	ctx := context.Background()
	var v int
	eventually(t, 30*time.Second, "connected, the queued write applied", func() error {
		if !c.Connected() {
			return errors.New("not connected")
		}
		if err := c.Get(ctx, "queued", &v); err != nil || v != 42 {
			return fmt.Errorf("queued: %d %v", v, err)
		}
		return nil
	})
	if err := c.Set(ctx, "shared", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "an L1 hit", func() error {
		if r, err := c.Lookup(ctx, "shared", &v); err != nil || r.Source != SourceL1 || v != 1 {
			return fmt.Errorf("%+v %d %v", r, v, err)
		}
		return nil
	})
	if err := other.Set(ctx, "shared", 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the other instance's write seen", func() error {
		if err := c.Get(ctx, "shared", &v); err != nil || v != 2 {
			return fmt.Errorf("%d %v", v, err)
		}
		return nil
	})
	if h := c.Health(ctx); h.Checks.Connectivity.Status != CheckPass {
		t.Errorf("Health once connected: connectivity %+v", h.Checks.Connectivity)
	}
}

// TestLazyConnect_Standalone: the cache starts while nothing listens on
// Redis's port, then redis-server starts there, and the cache works
// without a restart.
func TestLazyConnect_Standalone(t *testing.T) {
	checkNoLeaks(t)
	srv := redistest.NewStandalone(t)
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	logs := &logCapture{}
	lazy := func(o *Options) {
		o.Redis = RedisOptions{Addrs: []string{srv.Addr}, LazyConnect: true}
		o.Logger = slog.New(logs)
	}
	start := time.Now()
	c := newCache(t, "memory", lazy)
	if d := time.Since(start); d > time.Second {
		t.Errorf("New took %v without Redis", d)
	}
	lazyBeforeRedis(t, c)
	if l := logs.waitLine(t, 5*time.Second, "connecting in the background"); l.level != slog.LevelWarn {
		t.Errorf("the first failed connection: %v, want a WARN", l)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	other := newCache(t, "memory", func(o *Options) {
		o.Namespace = c.Namespace()
		o.Redis = RedisOptions{Addrs: []string{srv.Addr}}
	})
	lazyAfterRedis(t, c, other)
	if l := logs.waitLine(t, 5*time.Second, "connected to Redis"); l.level != slog.LevelInfo || l.attrs["attempts"] == "1" {
		t.Errorf("the connection: %v, want an INFO after several attempts", l)
	}
	if n := len(logs.matching("connecting in the background")); n != 1 {
		t.Errorf("%d lines for failed connections, want 1 (one per distinct reason); the log:%s", n, logs.all())
	}
}

// TestLazyConnect_Sentinel: the cache starts while no sentinel answers;
// once they start, it finds the master through them and works.
func TestLazyConnect_Sentinel(t *testing.T) {
	checkNoLeaks(t)
	st := redistest.NewSentinel(t)
	for _, sn := range st.Sentinels {
		if err := sn.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	redis := RedisOptions{SentinelMaster: st.MasterName, SentinelAddrs: st.SentinelAddrs()}
	c := newCache(t, "memory", func(o *Options) {
		o.Redis = redis
		o.Redis.LazyConnect = true
		o.Logger = slog.New(slog.DiscardHandler)
	})
	lazyBeforeRedis(t, c)
	for _, sn := range st.Sentinels {
		if err := sn.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	other := newCache(t, "memory", func(o *Options) {
		o.Namespace = c.Namespace()
		o.Redis = redis
	})
	lazyAfterRedis(t, c, other)
	if m := c.redisStore().Mode(); m != "sentinel" {
		t.Errorf("mode %q, want sentinel", m)
	}
}
