package tiercache

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// ackedInvalidations has c delete x, invalidate tag blue and clear its
// namespace, each acknowledged by Redis; it returns the tag and namespace
// versions Redis holds afterwards.
func ackedInvalidations(t *testing.T, c *Cache, srv *redistest.Server) (tagVer, nsVer int64) {
	t.Helper()
	ctx := context.Background()
	for _, k := range []string{"x", "y"} {
		if err := c.Set(ctx, k, 1, WithTags("blue")); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Delete(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := c.InvalidateTags(ctx, "blue"); err != nil {
		t.Fatal(err)
	}
	if err := c.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	ns := c.Namespace()
	return redisInt(t, srv, ns+"#t:blue"), redisInt(t, srv, ns+"#ns")
}

// loseLink kills Redis and waits until c has re-queued the three
// invalidations it acknowledged, then queues a Set of z (ErrQueued).
func loseLink(t *testing.T, c *Cache, srv *redistest.Server) {
	t.Helper()
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "acknowledged invalidations re-queued after the lost link", func() error {
		if n := c.QueueLength(); n != 3 {
			return errors.New("queue length " + strconv.Itoa(n))
		}
		return nil
	})
	if err := c.Set(context.Background(), "z", 2); !errors.Is(err, ErrQueued) {
		t.Fatalf("Set while Redis is down: %v, want ErrQueued", err)
	}
}

// journalOnDisk returns the number of operations the journal of ns in dir
// holds.
func journalOnDisk(t *testing.T, dir, ns string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, ns+".journal"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := decodeJournal(b)
	if err != nil {
		t.Fatal(err)
	}
	return len(f.queued())
}

// TestJournal_ReplayWindowSurvivesStop: invalidations Redis acknowledged
// within the replay window are queued again after a lost link (a failover
// may have lost them), and journaled: a stop (Close, with or without a
// Drain that could not apply them) keeps them, and the counts logged say
// so. The next start applies them once Redis answers, here a Redis that
// came back without them (as a new master that missed them would): x is
// deleted again and the tag and namespace versions are incremented again.
func TestJournal_ReplayWindowSurvivesStop(t *testing.T) {
	redistest.Require(t)
	for _, drain := range []bool{false, true} {
		name := "close"
		if drain {
			name = "drain_then_close"
		}
		t.Run(name, func(t *testing.T) {
			ns, dir := testNamespace(t), t.TempDir()
			srv := redistest.NewStandalone(t)
			rec := &journalRecorder{}
			a, alog, err := journaled(t, ns, srv.Addr, dir, func(o *Options) { o.Recorder = rec })
			if err != nil {
				t.Fatal(err)
			}
			tagVer, nsVer := ackedInvalidations(t, a, srv)
			rec.mu.Lock()
			syncs := rec.syncs
			rec.mu.Unlock()
			loseLink(t, a, srv)
			rec.mu.Lock()
			syncs = rec.syncs - syncs
			rec.mu.Unlock()
			// One for the three re-queues (two connections reporting the
			// lost link at once may each write them: one more), one for the
			// Set; never one per re-queued operation.
			if syncs < 2 || syncs > 3 {
				t.Fatalf("%d fsyncs for the three re-queues and the Set, want 2 or 3", syncs)
			}
			// On disk already, as a crash would leave it.
			if got := journalOnDisk(t, dir, ns); got != 4 {
				t.Fatalf("journal holds %d operations after the lost link and the Set, want 4", got)
			}
			if drain {
				ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
				rep, err := a.Drain(ctx)
				cancel()
				if !errors.Is(err, context.DeadlineExceeded) || rep.Kept != 4 || rep.Journaled != 4 {
					t.Fatalf("Drain with Redis down: %+v %v, want 4 kept, 4 journaled", rep, err)
				}
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if l := alog.String(); !strings.Contains(l, "the recovery journal keeps them") || !strings.Contains(l, "operations=4") || strings.Contains(l, "lost") {
				t.Fatalf("Close's log does not count the 4 journaled operations:\n%s", l)
			}
			if got := journalOnDisk(t, dir, ns); got != 4 {
				t.Fatalf("journal holds %d operations after Close, want 4", got)
			}

			// Redis comes back without the invalidations.
			if err := srv.Restart(); err != nil {
				t.Fatal(err)
			}
			for _, kv := range [][2]string{{ns + ":x", "stale"}, {ns + "#t:blue", strconv.FormatInt(tagVer-1, 10)}, {ns + "#ns", strconv.FormatInt(nsVer-1, 10)}} {
				if _, err := srv.Do("SET", kv[0], kv[1]); err != nil {
					t.Fatal(err)
				}
			}
			c, clog := mustJournaled(t, ns, srv.Addr, dir)
			waitReplayed(t, c)
			if redisExists(t, srv, ns+":x") {
				t.Fatal("x is in Redis: the re-queued Delete was not applied at the next start")
			}
			if v := redisInt(t, srv, ns+"#t:blue"); v != tagVer {
				t.Fatalf("tag version %d, want %d", v, tagVer)
			}
			if v := redisInt(t, srv, ns+"#ns"); v != nsVer {
				t.Fatalf("namespace version %d, want %d", v, nsVer)
			}
			if l := clog.String(); !strings.Contains(l, "recovery journal restored") || !strings.Contains(l, "operations=4") {
				t.Fatalf("restart's log does not count 4 restored operations:\n%s", l)
			}
		})
	}
}

// TestJournal_ReplayWindowJournalFails: when the journal cannot be written
// as a lost link re-queues acknowledged invalidations, they are queued in
// memory only, and Drain and Close say so: Journaled counts only what is on
// disk, and Close logs the operations lost at exit.
func TestJournal_ReplayWindowJournalFails(t *testing.T) {
	redistest.Require(t)
	ns, dir := testNamespace(t), t.TempDir()
	srv := redistest.NewStandalone(t)
	a, alog, err := journaled(t, ns, srv.Addr, dir)
	if err != nil {
		t.Fatal(err)
	}
	ackedInvalidations(t, a, srv)
	j := a.rec.jnl
	j.mu.Lock()
	j.broken = errors.New("input/output error")          // as after a failed fsync
	j.path = filepath.Join(t.TempDir(), "gone", "x.jnl") // and the rewrite fails too
	j.mu.Unlock()
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "acknowledged invalidations re-queued", func() error {
		if n := a.QueueLength(); n != 3 {
			return errors.New("queue length " + strconv.Itoa(n))
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	rep, err := a.Drain(ctx)
	cancel()
	if err == nil || rep.Kept != 3 || rep.Journaled != 0 {
		t.Fatalf("Drain: %+v %v, want 3 kept, none journaled", rep, err)
	}
	if err := a.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	l := alog.String()
	if !strings.Contains(l, "kept in memory only") || !strings.Contains(l, "could not keep; they are lost") || !strings.Contains(l, "lost=3") {
		t.Fatalf("the log does not say that 3 operations are lost:\n%s", l)
	}
}
