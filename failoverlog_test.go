package tiercache

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestFailoverLog_WhenFollowed: a Sentinel failover (SENTINEL FAILOVER)
// is logged as soon as the store follows it, not when statistics are next
// read: one WARN line with the old and the new master and the time since
// the first error, while readers keep reading.
func TestFailoverLog_WhenFollowed(t *testing.T) {
	st := redistest.NewSentinel(t)
	oldMaster := st.Master.Addr
	logs := &logCapture{}
	c := newCache(t, "memory", func(o *Options) {
		o.Redis = RedisOptions{SentinelMaster: st.MasterName, SentinelAddrs: st.SentinelAddrs()}
		o.Logger = slog.New(logs)
	})
	ctx := context.Background()
	if err := c.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var v int
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = c.Set(ctx, "w", 1)
			_ = c.Get(ctx, "k", &v)
		}
	})
	defer wg.Wait()
	defer close(stop)
	if err := st.Failover(); err != nil {
		t.Fatal(err)
	}
	done := time.Now()
	newMaster := st.Master.Addr
	l := logs.waitLine(t, 10*time.Second, "Sentinel failover followed")
	t.Logf("%v", l)
	if l.level != slog.LevelWarn || l.attrs["old_master"] != oldMaster || l.attrs["new_master"] != newMaster {
		t.Errorf("the failover line %v, want a WARN from %s to %s", l, oldMaster, newMaster)
	}
	if _, err := time.ParseDuration(l.attrs["since_first_error"]); err != nil {
		t.Errorf("since_first_error %q: %v", l.attrs["since_first_error"], err)
	}
	if late := l.at.Sub(done); late > 5*time.Second {
		t.Errorf("the failover was logged %v after the sentinels agreed on the new master", late)
	}
	eventually(t, 30*time.Second, "a write on the new master", func() error {
		if err := c.Set(ctx, "after", 2); err != nil {
			return err
		}
		if n := c.redisStore().Followed(); n == 0 && len(logs.matching("Sentinel failover followed")) == 0 {
			return errors.New("not followed")
		}
		return nil
	})
	if n := len(logs.matching("Sentinel failover followed")); n != 1 {
		t.Errorf("%d failover lines, want 1 per failover; the log:%s", n, logs.all())
	}
}
