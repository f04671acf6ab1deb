package tiercache

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestBreakerLog_OneLinePerOutage: during a real outage (redis-server
// killed for a while, then restarted) the breaker re-trips every
// OpenTimeout, yet the log holds exactly one WARN when it opens, with the
// cause and without the password, and one INFO when it closes, with how
// long it was open and how many calls failed fast.
func TestBreakerLog_OneLinePerOutage(t *testing.T) {
	const password = "s3cret-breaker-pw"
	srv := redistest.NewStandalone(t, "--requirepass", password)
	logs := &logCapture{}
	c := newCache(t, "memory", func(o *Options) {
		o.Redis = RedisOptions{URL: "redis://:" + password + "@" + srv.Addr}
		o.Logger = slog.New(logs)
		o.OperationTimeout = 200 * time.Millisecond
		o.RecoveryQueueSize = -1
	})
	ctx := context.Background()
	if err := c.Set(ctx, "k", 1); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	var v int
	// Reads for at least ten OpenTimeouts: the breaker opens, and then
	// goes half-open and open again several times.
	outage := time.Now()
	for time.Since(outage) < 10*DefaultBreakerOpenTimeout || c.BreakerState() == BreakerClosed {
		_ = c.Get(ctx, "missing", &v)
		time.Sleep(5 * time.Millisecond) // pacing the load, not synchronisation
	}
	// Counters.BreakerOpenFor counts from the first opening, across the
	// re-trips.
	if d := c.Counters().BreakerOpenFor; d < 5*DefaultBreakerOpenTimeout {
		t.Errorf("BreakerOpenFor %v during an outage of %v", d, time.Since(outage))
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the breaker closed", func() error {
		if err := c.Get(ctx, "missing", &v); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if s := c.BreakerState(); s != BreakerClosed {
			return errors.New(string(s))
		}
		return nil
	})
	closed := logs.waitLine(t, 5*time.Second, "circuit breaker closed")
	if d := c.Counters().BreakerOpenFor; d != 0 {
		t.Errorf("BreakerOpenFor %v once the breaker closed, want 0", d)
	}
	opened := logs.matching("circuit breaker opened")
	if len(opened) != 1 || opened[0].level != slog.LevelWarn {
		t.Fatalf("want exactly one WARN line for the breaker opening; the log:%s", logs.all())
	}
	if cause := opened[0].attrs["cause"]; !strings.Contains(cause, "unavailable") {
		t.Errorf("the open line's cause %q does not say L2 was unreachable", cause)
	}
	if n := len(logs.matching("circuit breaker closed")); n != 1 || closed.level != slog.LevelInfo {
		t.Fatalf("want exactly one INFO line for the breaker closing, got %d; the log:%s", n, logs.all())
	}
	openFor, err := time.ParseDuration(closed.attrs["open_for"])
	if err != nil || openFor < 10*DefaultBreakerOpenTimeout {
		t.Errorf("open_for %q (%v), want at least the outage's %v", closed.attrs["open_for"], err, 10*DefaultBreakerOpenTimeout)
	}
	if ff := closed.attrs["failed_fast"]; ff == "" || ff == "0" {
		t.Errorf("failed_fast %q, want the calls refused while open", ff)
	}
	if n := len(logs.matching("circuit breaker")) - len(logs.matching("circuit breaker changed state")); n != 2 {
		t.Errorf("%d breaker lines besides the DEBUG state changes, want 2; the log:%s", n, logs.all())
	}
	t.Logf("open: %v\nclose: %v", opened[0], closed)
	if logs.contains(password) {
		t.Errorf("the password appears in the log:%s", logs.all())
	}
}
