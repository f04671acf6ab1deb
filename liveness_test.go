package tiercache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/l1"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestLiveness_Interval: LivenessInterval sets how often the probe reads
// Redis, apart from OperationTimeout, and LivenessBound follows it. With
// 20 ms, a Redis of its own counts 40 probe reads well within the 10 s
// that the default interval (250 ms at this OperationTimeout) would take.
func TestLiveness_Interval(t *testing.T) {
	redistest.Require(t)
	for _, tc := range []struct {
		interval, timeout, bound time.Duration
	}{
		{0, time.Second, 250*time.Millisecond + 500*time.Millisecond},
		{20 * time.Millisecond, 4 * time.Second, 20*time.Millisecond + time.Second},
		{-1, time.Second, 0},
	} {
		c := newCache(t, "memory", func(o *Options) {
			o.Redis = RedisOptions{Addrs: []string{redistest.NewStandalone(t).Addr}}
			o.LivenessInterval, o.OperationTimeout = tc.interval, tc.timeout
		})
		if got := c.LivenessBound(); got != tc.bound {
			t.Errorf("LivenessInterval %v, OperationTimeout %v: LivenessBound = %v, want %v", tc.interval, tc.timeout, got, tc.bound)
		}
	}
	srv := redistest.NewStandalone(t)
	newCache(t, "memory", func(o *Options) {
		o.Redis = RedisOptions{Addrs: []string{srv.Addr}}
		o.LivenessInterval, o.OperationTimeout = 20*time.Millisecond, 4*time.Second
	})
	eventually(t, 5*time.Second, "40 probe reads", func() error {
		info, err := srv.Info("commandstats")
		if err != nil {
			return err
		}
		calls, _ := strconv.Atoi(strings.TrimPrefix(strings.Split(info["cmdstat_get"], ",")[0], "calls="))
		if calls < 40 {
			return fmt.Errorf("%d GETs", calls)
		}
		return nil
	})
}

// TestLiveness_ResumeAfterPause: a Redis that stops answering for less
// than the probe's grace suspends L1 (nothing answered as fresh), and its
// late answer resumes it as it was: the first read afterwards is an L1
// hit, not a read of Redis. Ending freshness for good, as a lost link
// does, would send that read to Redis.
func TestLiveness_ResumeAfterPause(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	srv := redistest.NewStandalone(t)
	c := newCache(t, "memory", func(o *Options) {
		o.Redis, o.Logger = RedisOptions{Addrs: []string{srv.Addr}}, discardLogger()
		o.OperationTimeout, o.LivenessInterval, o.Retries = time.Second, 20*time.Millisecond, -1
	})
	if err := c.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	var v int
	eventually(t, 5*time.Second, "an L1 hit", func() error {
		if r, err := c.Lookup(ctx, "k", &v); err != nil || r.Source != SourceL1 {
			return fmt.Errorf("%+v %v", r, err)
		}
		return nil
	})
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	eventually(t, 5*time.Second, "L1 suspended", func() error {
		if c.Counters().LinkSuspects == 0 {
			return errors.New("no link suspect")
		}
		return nil
	})
	if _, st := c.l1.Lookup("k"); st != l1.Candidate {
		t.Fatalf("while suspended, k is %v in L1, want a candidate only", st)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "L1 resumed", func() error {
		if cs := c.Counters(); cs.LinkResumes == 0 {
			return fmt.Errorf("no resume (%d suspects, %d resets)", cs.LinkSuspects, cs.LinkResets)
		}
		return nil
	})
	if r, err := c.Lookup(ctx, "k", &v); err != nil || r.Source != SourceL1 || v != 1 {
		t.Fatalf("first read after the resume: %+v %d %v, want the L1 hit", r, v, err)
	}
}

// TestLiveness_ResumeAppliesHeldNotices: a link slower than the probe's
// wait suspends L1; when the late answer comes, the invalidation Redis
// wrote before it (another instance's write, held back by the slow link)
// has been applied, so the resumed L1 does not answer the replaced value.
func TestLiveness_ResumeAppliesHeldNotices(t *testing.T) {
	redistest.Require(t)
	ctx := context.Background()
	c, px, srv := behindProxy(t, func(o *Options) {
		o.OperationTimeout, o.LivenessInterval, o.Retries = time.Second, 20*time.Millisecond, -1
	})
	d := newCache(t, "memory", func(o *Options) {
		o.Namespace, o.Redis = c.opts.Namespace, RedisOptions{Addrs: []string{srv.Addr}}
	})
	if err := c.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	var v int
	eventually(t, 5*time.Second, "an L1 hit", func() error {
		if r, err := c.Lookup(ctx, "k", &v); err != nil || r.Source != SourceL1 {
			return fmt.Errorf("%+v %v", r, err)
		}
		return nil
	})
	// A round trip of 700 ms: over the probe's 500 ms wait, within its
	// grace of four waits.
	if err := px.Latency(350 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := d.Set(ctx, "k", 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a suspension resumed", func() error {
		if cs := c.Counters(); cs.LinkResumes == 0 {
			return fmt.Errorf("no resume (%d suspects)", cs.LinkSuspects)
		}
		return nil
	})
	// Nothing read k since: the notice removed it.
	if _, st := c.l1.Lookup("k"); st != l1.Absent {
		t.Fatalf("after the resume, L1 holds the replaced value (%v): the held-back invalidation was not applied", st)
	}
	if err := px.Latency(0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Lookup(ctx, "k", &v); err != nil || v != 2 {
		t.Fatalf("read after the resume: %d %v, want 2", v, err)
	}
}
