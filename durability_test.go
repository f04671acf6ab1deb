package tiercache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// journaled opens a cache on addr with a recovery journal in dir, its log
// in the returned buffer. The caller closes it.
func journaled(t *testing.T, ns, addr, dir string, mod ...func(*Options)) (*Cache, *syncBuffer, error) {
	t.Helper()
	log := &syncBuffer{}
	o := Options{
		Namespace: ns, Redis: RedisOptions{Addrs: []string{addr}},
		RecoveryJournalDir: dir, Retries: -1, OperationTimeout: 200 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(log, nil)),
	}
	o.Breaker.OpenTimeout = 50 * time.Millisecond
	for _, m := range mod {
		m(&o)
	}
	c, err := New(o)
	return c, log, err
}

func mustJournaled(t *testing.T, ns, addr, dir string, mod ...func(*Options)) (*Cache, *syncBuffer) {
	t.Helper()
	c, log, err := journaled(t, ns, addr, dir, mod...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, log
}

// redisInt reads an integer key straight from Redis; -1 when it is missing.
func redisInt(t *testing.T, srv *redistest.Server, key string) int64 {
	t.Helper()
	v, err := srv.Do("GET", key)
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	if v == nil {
		return -1
	}
	n, err := strconv.ParseInt(fmt.Sprint(v), 10, 64)
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return n
}

func redisExists(t *testing.T, srv *redistest.Server, key string) bool {
	t.Helper()
	v, err := srv.Do("EXISTS", key)
	if err != nil {
		t.Fatalf("EXISTS %s: %v", key, err)
	}
	return fmt.Sprint(v) == "1"
}

// queueEverything, with L2 unreachable for c, queues a Set of a, a Delete
// of b, an invalidation of tag red and a Clear, each answered ErrQueued.
func queueEverything(t *testing.T, c *Cache) {
	t.Helper()
	ctx := context.Background()
	for name, op := range map[string]func() error{
		"set":        func() error { return c.Set(ctx, "a", 2) },
		"delete":     func() error { return c.Delete(ctx, "b") },
		"invalidate": func() error { return c.InvalidateTags(ctx, "red") },
		"clear":      func() error { return c.Clear(ctx) },
	} {
		if err := op(); !errors.Is(err, ErrQueued) {
			t.Fatalf("%s while Redis is unreachable: %v, want ErrQueued", name, err)
		}
	}
	if n := c.QueueLength(); n != 4 {
		t.Fatalf("queue length %d, want 4", n)
	}
}

// TestJournal_Restart: operations queued while Redis is unreachable, then
// Close without Drain (as a crash would leave them), are applied by the
// next New with the same directory, whether Redis comes back before it or
// after it. Until they are applied, the restarted cache serves none of the
// keys they concern; once they are, neither it nor a peer serves the
// values they replaced, and Redis shows them applied (the Set as a Delete).
func TestJournal_Restart(t *testing.T) {
	redistest.Require(t)
	for _, redisFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("redis_back_first=%v", redisFirst), func(t *testing.T) {
			ctx := context.Background()
			ns, dir := testNamespace(t), t.TempDir()
			srv := redistest.NewStandalone(t)
			px := redistest.NewProxy(t, srv.Addr)
			a, _, err := journaled(t, ns, px.Addr, dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"a", "b", "t", "c"} {
				if err := a.Set(ctx, k, 1, WithTags("red")); err != nil {
					t.Fatal(err)
				}
			}
			peer := peer(t, a, func(o *Options) { o.Redis = RedisOptions{Addrs: []string{srv.Addr}} })
			for _, k := range []string{"a", "b", "t", "c"} {
				if v, err := getInt(peer, k); err != nil || v != 1 {
					t.Fatalf("peer %s = %d %v", k, v, err)
				}
			}
			tagVer, nsVer := redisInt(t, srv, ns+"#t:red"), redisInt(t, srv, ns+"#ns")
			if err := px.Disable(); err != nil {
				t.Fatal(err)
			}
			queueEverything(t, a)
			if err := a.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if redisFirst {
				if err := px.Enable(); err != nil {
					t.Fatal(err)
				}
			}
			b, log := mustJournaled(t, ns, px.Addr, dir, func(o *Options) { o.Redis.LazyConnect = true })
			// Before anything is applied: none of the keys is served. a and
			// b, whose own operations are queued, read as misses; t and c
			// (under the tag and the namespace) miss or fail while Redis
			// is not connected.
			for _, k := range []string{"a", "b", "t", "c"} {
				v, err := getInt(b, k)
				if err == nil || (k <= "b" && !errors.Is(err, ErrNotFound)) {
					t.Fatalf("restarted cache served %s = %d %v before its operation was applied", k, v, err)
				}
			}
			many := map[string]int{}
			if err := b.GetMany(ctx, []string{"a", "b", "a"}, many); len(many) != 0 {
				t.Fatalf("GetMany served %v (%v) before the operations were applied", many, err)
			}
			if !redisFirst {
				if n := b.QueueLength(); n != 4 {
					t.Fatalf("restarted queue length %d, want 4", n)
				}
				if !redisExists(t, srv, ns+":a") {
					t.Fatal("a was deleted while Redis was unreachable for every cache")
				}
				if err := px.Enable(); err != nil {
					t.Fatal(err)
				}
			}
			waitReplayed(t, b)
			for _, k := range []string{"a", "b"} {
				if redisExists(t, srv, ns+":"+k) {
					t.Fatalf("%s still in Redis after the replay", k)
				}
			}
			if v := redisInt(t, srv, ns+"#t:red"); v != tagVer+1 {
				t.Fatalf("tag version %d, want %d", v, tagVer+1)
			}
			if v := redisInt(t, srv, ns+"#ns"); v != nsVer+1 {
				t.Fatalf("namespace version %d, want %d", v, nsVer+1)
			}
			for _, c := range []*Cache{b, peer} {
				eventually(t, 5*time.Second, "replaced values gone", func() error {
					for _, k := range []string{"a", "b", "t", "c"} {
						if v, err := getInt(c, k); !errors.Is(err, ErrNotFound) {
							return fmt.Errorf("%s = %d %v", k, v, err)
						}
					}
					return nil
				})
			}
			eventually(t, 5*time.Second, "restore and replay logged with counts", func() error {
				if !strings.Contains(log.String(), "recovery journal restored") || !strings.Contains(log.String(), "msg=\"tiercache: recovery queue replayed\"") {
					return errors.New(log.String())
				}
				return nil
			})
		})
	}
}

// TestJournal_Drain: Drain keeps what it cannot apply (and says so) while
// Redis is unreachable, applies everything once it answers, and leaves
// the journal empty.
func TestJournal_Drain(t *testing.T) {
	redistest.Require(t)
	ns, dir := testNamespace(t), t.TempDir()
	srv := redistest.NewStandalone(t)
	px := redistest.NewProxy(t, srv.Addr)
	c, _ := mustJournaled(t, ns, px.Addr, dir)
	if err := c.Set(context.Background(), "b", 1); err != nil {
		t.Fatal(err)
	}
	if err := px.Disable(); err != nil {
		t.Fatal(err)
	}
	queueEverything(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	rep, err := c.Drain(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || rep.Applied != 0 || rep.Kept != 4 {
		t.Fatalf("Drain while unreachable: %+v %v, want 4 kept and DeadlineExceeded", rep, err)
	}
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rep, err = c.Drain(ctx)
	if err != nil || rep.Kept != 0 || rep.Applied+int(c.Counters().Replayed) < 4 {
		t.Fatalf("Drain with Redis back: %+v %v", rep, err)
	}
	if redisExists(t, srv, ns+":b") {
		t.Fatal("b still in Redis after Drain")
	}
	fi, err := os.Stat(filepath.Join(dir, ns+".journal"))
	if err != nil || fi.Size() != int64(len(encodeJournalHeader(ns))) {
		t.Fatalf("journal after Drain: %v, %d bytes, want only the header", err, fi.Size())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Drain(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Drain after Close: %v", err)
	}
}

// TestJournal_OneProcessPerDir: a second cache on the same directory and
// namespace is refused while the first is open, and accepted after Close.
func TestJournal_OneProcessPerDir(t *testing.T) {
	redistest.Require(t)
	ns, dir := testNamespace(t), t.TempDir()
	srv := redistest.NewStandalone(t)
	a, _, err := journaled(t, ns, srv.Addr, dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := journaled(t, ns, srv.Addr, dir); !errors.Is(err, ErrJournalLocked) {
		t.Fatalf("second cache: %v, want ErrJournalLocked", err)
	}
	a.Close()
	mustJournaled(t, ns, srv.Addr, dir)
}

// TestJournal_QuarantineClears: a corrupt journal never stops New: it is
// moved aside, counted, and the namespace is cleared, so that no value an
// unknown queued invalidation replaced is served, by this cache or a peer.
func TestJournal_QuarantineClears(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	ns, dir := testNamespace(t), t.TempDir()
	srv := redistest.NewStandalone(t)
	old, _ := mustJournaled(t, ns, srv.Addr, t.TempDir())
	if err := old.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	if v, err := getInt(old, "k"); err != nil || v != 1 {
		t.Fatal(v, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ns+".journal"), []byte("TCJ1 garbage garbage garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := &journalRecorder{}
	c, log := mustJournaled(t, ns, srv.Addr, dir, func(o *Options) { o.Recorder = rec })
	waitReplayed(t, c)
	if rec.quarantined == nil || rec.quarantined[0] != quarantineCorrupt || !strings.Contains(log.String(), "recovery journal quarantined") {
		t.Fatalf("quarantine not reported: %v\n%s", rec.quarantined, log)
	}
	for _, cc := range []*Cache{c, old} {
		eventually(t, 5*time.Second, "cleared", func() error {
			if v, err := getInt(cc, "k"); !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("k = %d %v", v, err)
			}
			return nil
		})
	}
}

// TestJournal_BadOptions: a journal without a queue, or in a directory
// that cannot be made, is refused by New with ErrInvalidOptions.
func TestJournal_BadOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, o := range map[string]Options{
		"no queue":       {RecoveryJournalDir: t.TempDir(), RecoveryQueueSize: -1},
		"dir is a file":  {RecoveryJournalDir: filepath.Join(file, "sub")},
		"long namespace": {RecoveryJournalDir: t.TempDir(), Namespace: strings.Repeat("n", 2000)},
	} {
		if c, err := New(o); !errors.Is(err, ErrInvalidOptions) {
			if c != nil {
				c.Close()
			}
			t.Errorf("%s: %v, want ErrInvalidOptions", name, err)
		}
	}
}

// TestJournal_WriteFails: when the journal cannot be written, a write
// while Redis is unreachable fails with ErrJournal, not ErrQueued: it was
// neither applied nor queued, so nothing was promised.
func TestJournal_WriteFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, _ := mustJournaled(t, testNamespace(t), addr, t.TempDir(), func(o *Options) { o.Redis.LazyConnect = true })
	j := c.rec.jnl
	j.mu.Lock()
	j.broken = errors.New("input/output error")      // as after a failed fsync
	j.path = filepath.Join(t.TempDir(), "gone", "x") // and the rewrite fails too
	j.mu.Unlock()
	err = c.Set(context.Background(), "k", 1)
	if !errors.Is(err, ErrJournal) || errors.Is(err, ErrQueued) {
		t.Fatalf("Set with a broken journal: %v, want ErrJournal and not ErrQueued", err)
	}
	if n := c.QueueLength(); n != 0 {
		t.Fatalf("queue length %d, want 0", n)
	}
}
