package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestServer_Queued checks that writes accepted into the recovery queue
// while Redis is unreachable answer 202, that a full queue answers 503,
// and that reads fall back to fail-safe stale values with X-Cache: stale.
func TestServer_Queued(t *testing.T) {
	srv := redistest.NewStandalone(t)
	px := redistest.NewProxy(t, srv.Addr)
	c := newCache(t, tiercache.Options{
		Namespace:         "queued",
		Redis:             tiercache.RedisOptions{Addrs: []string{px.Addr}},
		OperationTimeout:  200 * time.Millisecond,
		Retries:           -1,
		FailSafe:          tiercache.FailSafeOptions{MaxDuration: time.Hour},
		RecoveryQueueSize: 2,
	})
	ts := newTestServer(t, Config{Cache: c, Timeout: 5 * time.Second})
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/k?ttl=1h", "v1"), http.StatusNoContent)
	wantStatus(t, do(t, ts, "GET", "/v1/cache/k", ""), http.StatusOK) // L2 read, now in L1
	if err := px.Disable(); err != nil {
		t.Fatal(err)
	}
	// The lost link ends L1 freshness; L2 is unreachable: stale.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := do(t, ts, "GET", "/v1/cache/k", "")
		if r.status == http.StatusOK && r.header.Get("X-Cache") == "stale" && r.body == "v1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no stale answer: %d %q %q", r.status, r.header.Get("X-Cache"), r.body)
		}
	}
	for _, req := range [][3]string{{"PUT", "/v1/cache/a", "x"}, {"DELETE", "/v1/cache/b", ""}} {
		r := do(t, ts, req[0], req[1], req[2])
		if r.status != http.StatusAccepted || !strings.Contains(r.body, `"queued"`) {
			t.Fatalf("%s %s: %d %q, want 202 queued", req[0], req[1], r.status, r.body)
		}
	}
	// The queue holds two keys: a third distinct key does not fit.
	wantStatus(t, do(t, ts, "POST", "/v1/invalidate", `{"tags":["t"]}`), http.StatusServiceUnavailable)
	if err := px.Enable(); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(15 * time.Second)
	for c.QueueLength() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("queue not replayed: %d left", c.QueueLength())
		}
		time.Sleep(10 * time.Millisecond)
	}
	wantStatus(t, do(t, ts, "GET", "/v1/cache/a", ""), http.StatusOK)
}
