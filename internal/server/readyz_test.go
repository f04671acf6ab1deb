package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestServer_ReadyzLazyStart starts the API on a cache whose Redis is not
// there yet (RedisOptions.LazyConnect): /healthz answers 200 and /readyz
// 503 with Retry-After; a read answers 503 with Retry-After. Once Redis
// starts, /readyz turns 200 and the API works, without a restart.
func TestServer_ReadyzLazyStart(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	if err := srv.Kill(); err != nil { // its port: nothing listens there now
		t.Fatal(err)
	}
	c := newCache(t, tiercache.Options{
		Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}, LazyConnect: true, DialTimeout: 500 * time.Millisecond},
	})
	ts := newTestServer(t, Config{Cache: c, Token: testToken, Timeout: 2 * time.Second})
	auth := []string{"Authorization", "Bearer " + testToken}

	wantStatus(t, do(t, ts, "GET", "/healthz", ""), http.StatusOK)
	r := do(t, ts, "GET", "/readyz", "")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.body != `{"status":"unhealthy"}`+"\n" {
		t.Fatalf("/readyz before Redis: %d, Retry-After %q, %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	wantStatus(t, do(t, ts, "GET", "/v1/cache/k", "", auth...), http.StatusServiceUnavailable)

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 30*time.Second, "/readyz 200 once Redis is up", func() error {
		if r := do(t, ts, "GET", "/readyz", ""); r.status != http.StatusOK {
			return errStatus(r)
		}
		return nil
	})
	redistest.Eventually(t, 30*time.Second, "a write once Redis is up", func() error {
		if r := do(t, ts, "PUT", "/v1/cache/k", "v", auth...); r.status != http.StatusNoContent {
			return errStatus(r)
		}
		return nil
	})
	r = do(t, ts, "GET", "/v1/cache/k", "", auth...)
	wantStatus(t, r, http.StatusOK)
	if r.body != "v" {
		t.Errorf("GET after the lazy start: %q", r.body)
	}
}
