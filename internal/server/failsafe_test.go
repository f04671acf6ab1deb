package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// TestServer_FailSafe stops a real redis-server under the API, killed or
// frozen (SIGSTOP): a key this instance held answers 200 with X-Cache:
// stale, Age, Cache-Status and Warning, never a 503; a key it never held
// answers 503 with Retry-After and a message without Redis's address,
// which goes to the log with the request id. A key deleted meanwhile (202)
// is not answered stale. Once Redis is back, the delete is applied and
// answers are fresh again.
func TestServer_FailSafe(t *testing.T) {
	t.Parallel()
	for _, stop := range []string{"kill", "pause"} {
		t.Run(stop, func(t *testing.T) {
			t.Parallel()
			testFailSafe(t, stop)
		})
	}
}

func testFailSafe(t *testing.T, stop string) {
	srv := redistest.NewStandalone(t)
	logs := &tiercachetest.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newCache(t, tiercache.Options{
		Namespace:        "fs",
		Redis:            tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		OperationTimeout: 200 * time.Millisecond,
		ReadTimeout:      300 * time.Millisecond,
		Retries:          -1,
		FailSafe:         tiercache.FailSafeOptions{MaxDuration: time.Hour},
	})
	ts := newTestServer(t, Config{Cache: c, Token: testToken, Logger: logger, Timeout: 2 * time.Second, RetryAfter: 1500 * time.Millisecond})
	auth := []string{"Authorization", "Bearer " + testToken}

	written := time.Now()
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/held?ttl=1h", "v1", auth...), http.StatusNoContent)
	r := do(t, ts, "GET", "/v1/cache/held", "", auth...)
	wantStatus(t, r, http.StatusOK)
	if r.header.Get("X-Cache") != "hit-l1" || r.header.Get("Warning") != "" || strings.Contains(r.header.Get("Cache-Status"), "stale") {
		t.Fatalf("fresh answer: X-Cache %q, Warning %q, Cache-Status %q", r.header.Get("X-Cache"), r.header.Get("Warning"), r.header.Get("Cache-Status"))
	}

	switch stop {
	case "kill":
		if err := srv.Kill(); err != nil {
			t.Fatal(err)
		}
	case "pause":
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Resume() })
	}

	// Until the cache sees Redis gone, L1 answers fresh; then stale.
	// Never a 503 for a key this instance holds.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r = do(t, ts, "GET", "/v1/cache/held", "", auth...)
		if r.status != http.StatusOK || r.body != "v1" {
			t.Fatalf("GET of a held key with Redis stopped: %d %q", r.status, r.body)
		}
		if r.header.Get("X-Cache") == "stale" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stale answer within 20 s: X-Cache %q", r.header.Get("X-Cache"))
		}
	}
	age, err := strconv.Atoi(r.header.Get("Age"))
	if err != nil || age < 0 || time.Duration(age)*time.Second > time.Since(written)+time.Second {
		t.Errorf("Age %q, want the seconds since the write (%v)", r.header.Get("Age"), time.Since(written))
	}
	if cs := r.header.Get("Cache-Status"); !strings.HasPrefix(cs, "tiercache; hit; ttl=") || !strings.HasSuffix(cs, "; detail=stale") {
		t.Errorf("Cache-Status %q", cs)
	}
	if w := r.header.Get("Warning"); w != `110 - "Response is Stale"` {
		t.Errorf("Warning %q", w)
	}
	h := do(t, ts, "HEAD", "/v1/cache/held", "", auth...)
	if h.status != http.StatusOK || h.header.Get("X-Cache") != "stale" || h.body != "" {
		t.Errorf("HEAD of a held key: %d, X-Cache %q, body %q", h.status, h.header.Get("X-Cache"), h.body)
	}

	// A key this instance never held: 503, Retry-After rounded up, and
	// nothing internal in the body; the cause is in the log.
	r = do(t, ts, "GET", "/v1/cache/never", "", auth...)
	wantStatus(t, r, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") != "2" {
		t.Errorf("Retry-After %q, want 2 (1.5 s rounded up)", r.header.Get("Retry-After"))
	}
	if e := decodeError(t, r); e.Error.Code != codeUnavailable && e.Error.Code != codeTimeout {
		t.Errorf("code %q, want unavailable or timeout", e.Error.Code)
	}
	if strings.Contains(r.body, srv.Addr) || strings.Contains(r.body, "fs:") {
		t.Errorf("the body shows internals: %s", r.body)
	}
	id := r.header.Get("X-Request-Id")
	if log := logs.String(); !strings.Contains(log, "request_id="+id) || !strings.Contains(log, "code=") {
		t.Errorf("the log has no line with the request id %s:\n%s", id, log)
	}

	// A key deleted through this instance while Redis is down (202, in
	// the recovery queue) is not answered stale any more.
	if r := do(t, ts, "DELETE", "/v1/cache/held", "", auth...); r.status != http.StatusAccepted {
		t.Fatalf("DELETE with Redis stopped: %d %s, want 202", r.status, r.body)
	}
	if r := do(t, ts, "GET", "/v1/cache/held", "", auth...); r.status == http.StatusOK {
		t.Errorf("GET of a key deleted while Redis is down: 200 %s (X-Cache %s)", r.body, r.header.Get("X-Cache"))
	}

	// Readiness: 503 with Retry-After, the verdict alone without the token.
	r = do(t, ts, "GET", "/readyz", "")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "2" || r.body != `{"status":"unhealthy"}`+"\n" {
		t.Errorf("/readyz with Redis stopped: %d, Retry-After %q, %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if r := do(t, ts, "GET", "/healthz", ""); r.status != http.StatusOK {
		t.Errorf("/healthz with Redis stopped: %d", r.status)
	}

	switch stop {
	case "kill":
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
	case "pause":
		if err := srv.Resume(); err != nil {
			t.Fatal(err)
		}
	}
	// Redis back: fresh answers, and a miss is a 404 again.
	redistest.Eventually(t, 20*time.Second, "fresh answers after Redis is back", func() error {
		r := do(t, ts, "GET", "/v1/cache/never", "", auth...)
		if r.status != http.StatusNotFound {
			return errStatus(r)
		}
		return nil
	})
	// The queued delete is applied once Redis answers: the key stays gone.
	redistest.Eventually(t, 20*time.Second, "the queued delete applied", func() error {
		if c.QueueLength() > 0 {
			return fmt.Errorf("%d operations queued", c.QueueLength())
		}
		return nil
	})
	if r := do(t, ts, "GET", "/v1/cache/held", "", auth...); r.status != http.StatusNotFound {
		t.Errorf("GET of the deleted key once Redis is back: %d %s", r.status, r.body)
	}
	redistest.Eventually(t, 20*time.Second, "a write and a fresh read after Redis is back", func() error {
		if r := do(t, ts, "PUT", "/v1/cache/after", "a", auth...); r.status != http.StatusNoContent {
			return errStatus(r)
		}
		r := do(t, ts, "GET", "/v1/cache/after", "", auth...)
		if r.status != http.StatusOK || r.body != "a" || r.header.Get("X-Cache") == "stale" || r.header.Get("Warning") != "" {
			return errStatus(r)
		}
		return nil
	})
}

// errStatus describes an unexpected answer, for Eventually.
func errStatus(r response) error {
	return fmt.Errorf("%d X-Cache=%q %s", r.status, r.header.Get("X-Cache"), r.body)
}

// TestCacheHeaders checks Age, Cache-Control and Cache-Status against a
// fixed clock. max-age counts from the value's creation, as Age does, so
// that max-age minus Age is the whole seconds of TTL left.
func TestCacheHeaders(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name                             string
		res                              tiercache.Result
		xCache, age, cc, status, warning string
	}{
		{"fresh with a TTL", tiercache.Result{Source: tiercache.SourceL1, CreatedAt: now.Add(-90500 * time.Millisecond), ExpiresAt: now.Add(30 * time.Second)},
			"hit-l1", "90", "max-age=120", "tiercache; hit; ttl=30", ""},
		{"fresh, fractions of seconds", tiercache.Result{Source: tiercache.SourceL2, CreatedAt: now.Add(-999 * time.Millisecond), ExpiresAt: now.Add(59001 * time.Millisecond)},
			"hit-l2", "0", "max-age=59", "tiercache; hit; ttl=59", ""},
		{"less than a second left", tiercache.Result{Source: tiercache.SourceL1, CreatedAt: now.Add(-10 * time.Second), ExpiresAt: now.Add(500 * time.Millisecond)},
			"hit-l1", "10", "max-age=10", "tiercache; hit; ttl=0", ""},
		{"no TTL, no creation time", tiercache.Result{Source: tiercache.SourceL2},
			"hit-l2", "", "no-cache", "tiercache; hit", ""},
		{"stale past its TTL", tiercache.Result{Source: tiercache.SourceStale, Stale: true, CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-1500 * time.Millisecond)},
			"stale", "3600", "no-cache", "tiercache; hit; ttl=-2; detail=stale", `110 - "Response is Stale"`},
		{"stale within its TTL (link lost)", tiercache.Result{Source: tiercache.SourceStale, Stale: true, CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(time.Minute)},
			"stale", "60", "no-cache", "tiercache; hit; ttl=60; detail=stale", `110 - "Response is Stale"`},
		{"written by a clock ahead", tiercache.Result{Source: tiercache.SourceL2, CreatedAt: now.Add(2 * time.Second)},
			"hit-l2", "0", "no-cache", "tiercache; hit", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			cacheHeaders(h, tc.res, `"0123456789abcdef"`, now)
			got := [6]string{h.Get("X-Cache"), h.Get("Age"), h.Get("Cache-Control"), h.Get("Cache-Status"), h.Get("Warning"), h.Get("ETag")}
			if want := [6]string{tc.xCache, tc.age, tc.cc, tc.status, tc.warning, `"0123456789abcdef"`}; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

// TestServer_Timeout: when the server's own bound (Config.Timeout) runs
// out before the cache answers, the code is timeout.
func TestServer_Timeout(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	c := newCache(t, tiercache.Options{
		Redis:            tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		OperationTimeout: 10 * time.Second,
		Retries:          -1,
	})
	ts := newTestServer(t, Config{Cache: c, Timeout: 300 * time.Millisecond})
	wantStatus(t, do(t, ts, "GET", "/v1/cache/k", ""), http.StatusNotFound)
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	start := time.Now()
	r := do(t, ts, "GET", "/v1/cache/k", "")
	wantStatus(t, r, http.StatusServiceUnavailable)
	if e := decodeError(t, r); e.Error.Code != codeTimeout || !strings.Contains(e.Error.Message, "300ms") {
		t.Errorf("error %+v, want the code timeout naming 300ms", e.Error)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("answered after %v", d)
	}
}
