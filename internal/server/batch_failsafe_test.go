package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestBatch_RedisDown kills the redis-server under the API. mget still
// answers 200: the keys this instance holds are stale, with their values,
// and a key it never held is an error item (unavailable or timeout),
// without failing the others. mset and mdelete answer 202 queued, and the
// keys they concern read as misses until Redis is back; then the queued
// operations are applied and the answers are fresh.
func TestBatch_RedisDown(t *testing.T) {
	t.Parallel()
	srv, c, ts := redisDownServer(t, "batchdown")
	wantStatus(t, do(t, ts, "POST", "/v1/mset", `{"items":[{"key":"held:1","value":"b25l","ttl":"1h"},{"key":"held:2","value":"dHdv","ttl":"1h"}]}`), http.StatusNoContent)
	if a := mget(t, ts, []string{"held:1", "held:2"}); a.Items[0].Status != "hit-l1" || a.Items[1].Status != "hit-l1" {
		t.Fatalf("first read: %+v, want hit-l1 (the writer keeps what it wrote)", a.Items)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}

	keys := []string{"held:1", "never", "held:2"}
	var a batchAnswer
	redistest.Eventually(t, 20*time.Second, "stale batch answers", func() error {
		a = mget(t, ts, keys)
		if a.Items[0].Status != "stale" || a.Items[2].Status != "stale" {
			return fmt.Errorf("statuses %s, %s", a.Items[0].Status, a.Items[2].Status)
		}
		return nil
	})
	if string(a.value(t, 0)) != "one" || string(a.value(t, 2)) != "two" {
		t.Errorf("stale values %q, %q", a.value(t, 0), a.value(t, 2))
	}
	if it := a.Items[0]; it.TTL == nil || *it.TTL <= 0 || it.Age == nil {
		t.Errorf("stale item ttl %v age %v, want the time left of its hour and its age", it.TTL, it.Age)
	}
	never := a.Items[1]
	if never.Status != "error" || never.Value != nil || never.Error == nil ||
		(never.Error.Code != codeUnavailable && never.Error.Code != codeTimeout) || never.Error.Message == "" {
		t.Fatalf("never-held key: %+v %+v, want an error item (unavailable or timeout)", never, never.Error)
	}
	if strings.Contains(never.Error.Message, srv.Addr) || strings.Contains(never.Error.Message, "batchdown:") {
		t.Errorf("the error item shows internals: %s", never.Error.Message)
	}

	// Writes and deletes are queued: 202, and their keys read as misses
	// (never the stale copy of a value they replace or delete).
	for _, req := range [][2]string{
		{"/v1/mset", `{"items":[{"key":"held:2","value":"bmV3","ttl":"1h"},{"key":"fresh","value":"ZnJlc2g="}]}`},
		{"/v1/mdelete", `{"keys":["held:1"]}`},
	} {
		r := do(t, ts, "POST", req[0], req[1])
		wantStatus(t, r, http.StatusAccepted)
		if !strings.Contains(r.body, `"status":"queued"`) {
			t.Errorf("%s: %s, want the queued body", req[0], r.body)
		}
	}
	a = mget(t, ts, []string{"held:1", "held:2", "fresh"})
	for _, it := range a.Items {
		if it.Status != "miss" {
			t.Errorf("%s with its operation queued: %s, want miss", it.Key, it.Status)
		}
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	redistest.Eventually(t, 20*time.Second, "the queued batch applied", func() error {
		if n := c.QueueLength(); n > 0 {
			return fmt.Errorf("%d operations queued", n)
		}
		a := mget(t, ts, []string{"held:1", "held:2", "fresh", "never"})
		if a.Items[0].Status != "miss" || a.Items[3].Status != "miss" || a.Items[1].Value == nil || a.Items[2].Value == nil {
			return fmt.Errorf("%+v", a.Items)
		}
		if string(a.value(t, 1)) != "new" || string(a.value(t, 2)) != "fresh" {
			return fmt.Errorf("values %q, %q", a.value(t, 1), a.value(t, 2))
		}
		return nil
	})
}

// TestBatch_OneRoundTrip puts 50 ms of round trip between the cache and
// Redis: a batch of 100 keys takes a few round trips, not one per key
// (which would take 5 s).
func TestBatch_OneRoundTrip(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	px := redistest.NewProxy(t, srv.Addr)
	c := newCache(t, tiercache.Options{
		Namespace:        "batchrtt",
		Redis:            tiercache.RedisOptions{Addrs: []string{px.Addr}},
		L1:               tiercache.L1Options{Disabled: true}, // every read goes to Redis
		OperationTimeout: 5 * time.Second,
	})
	ts := newTestServer(t, Config{Cache: c, Timeout: 10 * time.Second})
	const n, rtt = 100, 50 * time.Millisecond
	var items, keys []string
	for i := range n {
		k := fmt.Sprintf("k%d", i)
		keys = append(keys, `"`+k+`"`)
		items = append(items, fmt.Sprintf(`{"key":%q,"value":"dg==","tags":["t"]}`, k))
	}
	// Warm the connection and the tag and namespace versions first.
	wantStatus(t, do(t, ts, "POST", "/v1/mset", `{"items":[{"key":"warm","value":"dg==","tags":["t"]}]}`), http.StatusNoContent)
	if err := px.Latency(rtt / 2); err != nil {
		t.Fatal(err)
	}
	for _, req := range []struct {
		path, body string
		status     int
	}{
		{"/v1/mset", `{"items":[` + strings.Join(items, ",") + `]}`, http.StatusNoContent},
		{"/v1/mget", `{"keys":[` + strings.Join(keys, ",") + `]}`, http.StatusOK},
		{"/v1/mdelete", `{"keys":[` + strings.Join(keys, ",") + `]}`, http.StatusNoContent},
	} {
		start := time.Now()
		r := do(t, ts, "POST", req.path, req.body)
		took := time.Since(start)
		wantStatus(t, r, req.status)
		if req.path == "/v1/mget" && strings.Count(r.body, `"status":"hit-l2"`) != n {
			t.Errorf("mget: %s", r.body)
		}
		// A few round trips (versions, then the batch), far from n.
		if took > 10*rtt {
			t.Errorf("%s of %d keys took %v, more than 10 round trips of %v", req.path, n, took, rtt)
		}
		t.Logf("%s of %d keys: %v (%.1f round trips)", req.path, n, took, float64(took)/float64(rtt))
	}
}

// redisDownServer is a server, and its cache in namespace ns, on a
// redis-server of its own, set for tests that kill that server: short
// timeouts, no retries, and fail-safe for an hour.
func redisDownServer(t *testing.T, ns string) (*redistest.Server, *tiercache.Cache, *httptest.Server) {
	t.Helper()
	srv := redistest.NewStandalone(t)
	c := newCache(t, tiercache.Options{
		Namespace:        ns,
		Redis:            tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		OperationTimeout: 200 * time.Millisecond,
		ReadTimeout:      300 * time.Millisecond,
		Retries:          -1,
		FailSafe:         tiercache.FailSafeOptions{MaxDuration: time.Hour},
	})
	return srv, c, newTestServer(t, Config{Cache: c, Timeout: 2 * time.Second})
}
