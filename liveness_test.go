package tiercache

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

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
