package server

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestHTTPCaching_Topologies checks the HTTP caching conventions of one
// key on every topology, through two servers over two caches of the same
// namespace (one cache for memory): the Content-Type round trip, the same
// ETag on both instances, 304, Age and Cache-Control, and conditional
// writes, with eight racing writers of which exactly one wins.
func TestHTTPCaching_Topologies(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"memory", "standalone", "sentinel", "cluster", "production"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			opts, _ := batchTopology(t, name)
			ca := newCache(t, opts)
			cb := ca
			if name != "memory" {
				cb = newCache(t, opts)
			}
			a := newTestServer(t, Config{Cache: ca, Timeout: 10 * time.Second})
			b := newTestServer(t, Config{Cache: cb, Timeout: 10 * time.Second})
			testContentTypeAndETag(t, a, b, cb)
			testConditionalWrites(t, a, b)
		})
	}
}

const jsonType = "application/json; charset=utf-8"

func testContentTypeAndETag(t *testing.T, a, b *httptest.Server, cb *tiercache.Cache) {
	t.Helper()
	body := `{"id":42,"name":"Ada"}`
	wantStatus(t, do(t, a, "PUT", "/v1/cache/user:42?ttl=60s&tags=users", body, "Content-Type", jsonType), http.StatusNoContent)
	ra := do(t, a, "GET", "/v1/cache/user:42", "")
	rb := do(t, b, "GET", "/v1/cache/user:42", "")
	for _, r := range []response{ra, rb} {
		wantStatus(t, r, http.StatusOK)
		if r.body != body || r.header.Get("Content-Type") != jsonType {
			t.Fatalf("GET: %q with Content-Type %q, want %q with %q", r.body, r.header.Get("Content-Type"), body, jsonType)
		}
		wantFreshness(t, r, 60)
	}
	etag := ra.header.Get("ETag")
	if len(etag) != 18 || etag[0] != '"' || rb.header.Get("ETag") != etag {
		t.Fatalf("ETag %q on one instance and %q on the other, want the same quoted tag", etag, rb.header.Get("ETag"))
	}
	// A Go program reads the JSON body into its own type.
	var u struct {
		Name string `json:"name"`
	}
	if err := cb.Get(t.Context(), "user:42", &u); err != nil || u.Name != "Ada" {
		t.Fatalf("Go Get into a struct: %+v, %v", u, err)
	}
	h := do(t, b, "HEAD", "/v1/cache/user:42", "")
	if h.status != http.StatusOK || h.body != "" || h.header.Get("ETag") != etag || h.header.Get("Content-Type") != jsonType {
		t.Fatalf("HEAD: %d %q, ETag %q, Content-Type %q", h.status, h.body, h.header.Get("ETag"), h.header.Get("Content-Type"))
	}
	for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, "*"} {
		for _, ts := range []*httptest.Server{a, b} {
			for _, m := range []string{"GET", "HEAD"} {
				r := do(t, ts, m, "/v1/cache/user:42", "", "If-None-Match", inm)
				if r.status != http.StatusNotModified || r.body != "" || r.header.Get("ETag") != etag {
					t.Fatalf("%s with If-None-Match %s: %d %q, ETag %q; want 304 without a body", m, inm, r.status, r.body, r.header.Get("ETag"))
				}
				wantFreshness(t, r, 60)
			}
		}
	}
	wantStatus(t, do(t, b, "GET", "/v1/cache/user:42", "", "If-Match", `"0000000000000000"`), http.StatusPreconditionFailed)
	// A body that does not parse as its type is refused; nothing changes.
	for _, bad := range []struct{ body, ct string }{{`{"id":`, "application/json"}, {"", "application/problem+json"}, {"\x92\x01", "application/msgpack"}} {
		r := do(t, a, "PUT", "/v1/cache/user:42", bad.body, "Content-Type", bad.ct)
		wantStatus(t, r, http.StatusBadRequest)
		if decodeError(t, r).Error.Code != codeInvalidBody {
			t.Fatalf("PUT %q as %s: %s, want invalid_body", bad.body, bad.ct, r.body)
		}
	}
	for _, bad := range []string{"json", "text/plain; charset", "text/" + strings.Repeat("x", 300)} {
		r := do(t, a, "PUT", "/v1/cache/user:42", "x", "Content-Type", bad)
		wantStatus(t, r, http.StatusBadRequest)
		if decodeError(t, r).Error.Code != codeInvalidContentType {
			t.Fatalf("PUT with Content-Type %q: %s, want invalid_content_type", bad, r.body)
		}
	}
	if r := do(t, b, "GET", "/v1/cache/user:42", ""); r.header.Get("ETag") != etag || r.body != body {
		t.Fatalf("after refused PUTs: %q, ETag %q; want the value unchanged", r.body, r.header.Get("ETag"))
	}
	// A new value has a new ETag, on both instances.
	wantStatus(t, do(t, a, "PUT", "/v1/cache/user:42?ttl=30s&tags=users", `{"id":42,"name":"Grace"}`, "Content-Type", "application/json"), http.StatusNoContent)
	for _, ts := range []*httptest.Server{a, b} {
		eventuallyHTTP(t, func() bool {
			r := do(t, ts, "GET", "/v1/cache/user:42", "", "If-None-Match", etag)
			return r.status == http.StatusOK && r.header.Get("ETag") != etag && r.header.Get("Content-Type") == "application/json"
		})
	}
	// Without a Content-Type, the body is raw bytes.
	wantStatus(t, do(t, a, "PUT", "/v1/cache/blob", "\x00\x01"), http.StatusNoContent)
	if r := do(t, b, "GET", "/v1/cache/blob", ""); r.header.Get("Content-Type") != "application/octet-stream" || r.body != "\x00\x01" {
		t.Fatalf("raw PUT: %q as %q", r.body, r.header.Get("Content-Type"))
	}
}

// wantFreshness checks Age and Cache-Control of an answer for a value
// written with a TTL of ttl seconds: max-age minus Age is the whole
// seconds left, so at most ttl and, so soon after the write, near it.
func wantFreshness(t *testing.T, r response, ttl int) {
	t.Helper()
	age, err := strconv.Atoi(r.header.Get("Age"))
	if err != nil || age < 0 {
		t.Fatalf("Age %q", r.header.Get("Age"))
	}
	cc := r.header.Get("Cache-Control")
	maxAge, err := strconv.Atoi(strings.TrimPrefix(cc, "max-age="))
	if err != nil || !strings.HasPrefix(cc, "max-age=") {
		t.Fatalf("Cache-Control %q, want max-age=N", cc)
	}
	if left := maxAge - age; left > ttl || left < ttl-10 {
		t.Fatalf("Cache-Control %q with Age %d leaves %d s, want at most %d and near it", cc, age, left, ttl)
	}
}

func testConditionalWrites(t *testing.T, a, b *httptest.Server) {
	t.Helper()
	const path = "/v1/cache/doc"
	wantStatus(t, do(t, a, "PUT", path, "v0", "If-Match", "*"), http.StatusPreconditionFailed)
	wantStatus(t, do(t, a, "DELETE", path, "", "If-Match", "*"), http.StatusPreconditionFailed)
	created := do(t, a, "PUT", path+"?tags=docs", "v1", "If-None-Match", "*")
	wantStatus(t, created, http.StatusNoContent)
	if got := do(t, b, "GET", path, "").header.Get("ETag"); got != created.header.Get("ETag") {
		t.Fatalf("PUT answered ETag %q, GET %q", created.header.Get("ETag"), got)
	}
	wantStatus(t, do(t, b, "PUT", path, "v1b", "If-None-Match", "*"), http.StatusPreconditionFailed)
	for _, hdr := range [][2]string{{"If-None-Match", `"abc"`}, {"If-Match", "abc"}, {"If-Match", `"a"b"`}} {
		r := do(t, b, "PUT", path, "x", hdr[0], hdr[1])
		wantStatus(t, r, http.StatusBadRequest)
		if decodeError(t, r).Error.Code != codeInvalidCondition {
			t.Fatalf("PUT with %s: %s: %s, want invalid_condition", hdr[0], hdr[1], r.body)
		}
	}
	wantStatus(t, do(t, b, "DELETE", path, "", "If-None-Match", "*"), http.StatusBadRequest)

	// Rounds of eight writers holding the same ETag, on both instances:
	// exactly one wins each round.
	for round := range 5 {
		etag := do(t, a, "GET", path, "").header.Get("ETag")
		var wins, fails atomic.Int32
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				ts := []*httptest.Server{a, b}[w%2]
				r := do(t, ts, "PUT", path+"?tags=docs", "round "+strconv.Itoa(round)+" writer "+strconv.Itoa(w), "If-Match", etag)
				switch r.status {
				case http.StatusNoContent:
					wins.Add(1)
				case http.StatusPreconditionFailed:
					fails.Add(1)
				default:
					t.Errorf("round %d writer %d: %d %s", round, w, r.status, r.body)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || fails.Load() != 7 {
			t.Fatalf("round %d: %d writers won and %d got 412, want 1 and 7", round, wins.Load(), fails.Load())
		}
		// The winner's value is what both instances serve.
		eventuallyHTTP(t, func() bool {
			return do(t, b, "GET", path, "").header.Get("ETag") == do(t, a, "GET", path, "").header.Get("ETag")
		})
	}

	// A tag invalidation makes the value not current: If-Match fails and
	// If-None-Match: * succeeds.
	etag := do(t, a, "GET", path, "").header.Get("ETag")
	wantStatus(t, do(t, b, "POST", "/v1/invalidate", `{"tags":["docs"]}`), http.StatusNoContent)
	wantStatus(t, do(t, a, "PUT", path, "after", "If-Match", etag), http.StatusPreconditionFailed)
	wantStatus(t, do(t, a, "DELETE", path, "", "If-Match", etag), http.StatusPreconditionFailed)
	wantStatus(t, do(t, a, "PUT", path, "after", "If-None-Match", "*"), http.StatusNoContent)
	r := do(t, b, "GET", path, "")
	wantStatus(t, r, http.StatusOK)
	if r.body != "after" || r.header.Get("Cache-Control") == "" {
		t.Fatalf("after the invalidation: %q, Cache-Control %q", r.body, r.header.Get("Cache-Control"))
	}
	etag = r.header.Get("ETag")
	wantStatus(t, do(t, b, "DELETE", path, "", "If-Match", `"0123456789abcdef"`), http.StatusPreconditionFailed)
	wantStatus(t, do(t, b, "DELETE", path, "", "If-Match", `W/`+etag), http.StatusPreconditionFailed)
	wantStatus(t, do(t, b, "DELETE", path, "", "If-Match", `"0123456789abcdef", `+etag), http.StatusNoContent)
	eventuallyHTTP(t, func() bool { return do(t, a, "GET", path, "").status == http.StatusNotFound })
}

// eventuallyHTTP polls cond for up to five seconds: another instance sees
// a write once its invalidation arrives.
func eventuallyHTTP(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition still false after 5s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestHTTPCaching_RedisDown: with Redis unreachable, a plain PUT is
// queued (202) but a conditional one cannot be checked: 503, never 202.
func TestHTTPCaching_RedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	ts := newTestServer(t, Config{Timeout: 2 * time.Second, Cache: newCache(t, tiercache.Options{
		Redis:            tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		OperationTimeout: 300 * time.Millisecond,
	})})
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/k", "v"), http.StatusNoContent)
	etag := do(t, ts, "GET", "/v1/cache/k", "").header.Get("ETag")
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ method, hdr, val string }{
		{"PUT", "If-Match", etag},
		{"PUT", "If-None-Match", "*"},
		{"DELETE", "If-Match", etag},
	} {
		r := do(t, ts, tc.method, "/v1/cache/k", "v2", tc.hdr, tc.val)
		wantStatus(t, r, http.StatusServiceUnavailable)
		if code := decodeError(t, r).Error.Code; code != codeUnavailable && code != codeTimeout {
			t.Fatalf("%s with %s while Redis is down: code %q", tc.method, tc.hdr, code)
		}
	}
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/k", "v3"), http.StatusAccepted)
	// While that write waits in the queue, a conditional one cannot be
	// checked either.
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/k", "v4", "If-None-Match", "*"), http.StatusServiceUnavailable)
}

// TestQueryRule: unknown query parameters get 400 invalid_parameter on
// every endpoint, naming the parameter; the parameters an endpoint takes
// pass.
func TestQueryRule(t *testing.T) {
	t.Parallel()
	_, reg, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t, Config{Metrics: reg})
	for _, ep := range []struct{ method, path, body string }{
		{"GET", "/v1/cache/k", ""},
		{"HEAD", "/v1/cache/k", ""},
		{"PUT", "/v1/cache/k?ttl=30s", "v"},
		{"DELETE", "/v1/cache/k", ""},
		{"POST", "/v1/invalidate", `{"tags":["a"]}`},
		{"POST", "/v1/clear", ""},
		{"POST", "/v1/warm", ""},
		{"GET", "/v1/warm", ""},
		{"POST", "/v1/mget", `{"keys":["k"]}`},
		{"POST", "/v1/mset", `{"items":[{"key":"k","value":"dg=="}]}`},
		{"POST", "/v1/mdelete", `{"keys":["k"]}`},
		{"GET", "/v1/stats", ""},
		{"GET", "/healthz", ""},
		{"GET", "/readyz", ""},
		{"GET", "/metrics", ""},
		{"GET", "/?refresh=5", ""},
		{"GET", "/assets/app.js", ""},
	} {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			t.Parallel()
			sep := "?"
			if strings.Contains(ep.path, "?") {
				sep = "&"
			}
			r := do(t, ts, ep.method, ep.path+sep+"bogus=1", ep.body)
			wantStatus(t, r, http.StatusBadRequest)
			if ep.method == "HEAD" {
				return
			}
			e := decodeError(t, r)
			if e.Error.Code != codeInvalidParameter || !strings.Contains(e.Error.Message, `"bogus"`) {
				t.Fatalf("error %+v, want invalid_parameter naming \"bogus\"", e.Error)
			}
			if ok := do(t, ts, ep.method, ep.path, ep.body); ok.status == http.StatusBadRequest {
				t.Fatalf("without the unknown parameter: %d %s", ok.status, ok.body)
			}
			if r := do(t, ts, ep.method, ep.path+sep+"a=%zz", ep.body); r.status != http.StatusBadRequest {
				t.Fatalf("a query that cannot be parsed: %d", r.status)
			}
		})
	}
	r := do(t, ts, "PUT", "/v1/cache/k?tll=30s", "v")
	if e := decodeError(t, r); !strings.Contains(e.Error.Message, "allowed: ttl, tags") {
		t.Fatalf("PUT with a misspelt ttl: %q, want the allowed parameters named", e.Error.Message)
	}
}

// TestHTTPCaching_RedisFrozen: a conditional write to a frozen Redis
// (SIGSTOP) answers 503 within the cache's operation timeout, not the
// server's much longer one, though it needs a connection of its own.
func TestHTTPCaching_RedisFrozen(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	ts := newTestServer(t, Config{Timeout: 20 * time.Second, Cache: newCache(t, tiercache.Options{
		Redis:            tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		OperationTimeout: 300 * time.Millisecond,
	})})
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/k", "v"), http.StatusNoContent)
	etag := do(t, ts, "GET", "/v1/cache/k", "").header.Get("ETag")
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	start := time.Now()
	r := do(t, ts, "PUT", "/v1/cache/k", "v2", "If-Match", etag)
	wantStatus(t, r, http.StatusServiceUnavailable)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("answered after %v, want about the operation timeout", d)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	eventuallyHTTP(t, func() bool {
		return do(t, ts, "PUT", "/v1/cache/k", "v3", "If-Match", etag).status == http.StatusNoContent
	})
}

func TestEntityTagLists(t *testing.T) {
	t.Parallel()
	const etag = `"0123456789abcdef"`
	for _, tc := range []struct {
		lines       []string
		weak, match bool
		tags        []string // entityTags; nil when refused
	}{
		{[]string{etag}, false, true, []string{"0123456789abcdef"}},
		{[]string{`W/` + etag}, false, false, []string{`W/` + etag}},
		{[]string{`W/` + etag}, true, true, []string{`W/` + etag}},
		{[]string{`"x", ` + etag}, false, true, []string{"x", "0123456789abcdef"}},
		{[]string{`"x"`, ` ` + etag + ` `}, false, true, []string{"x", "0123456789abcdef"}},
		{[]string{`"x",,"y"`}, false, false, []string{"x", "y"}},
		{[]string{"*"}, false, true, []string{"*"}},
		{[]string{"0123456789abcdef"}, false, false, nil}, // unquoted
		{[]string{`"a"b"`}, false, false, nil},
		{[]string{`,`}, false, false, nil},
	} {
		if got := etagMatches(tc.lines, etag, tc.weak); got != tc.match {
			t.Errorf("etagMatches(%q, weak=%v) = %v, want %v", tc.lines, tc.weak, got, tc.match)
		}
		tags, ok := entityTags(tc.lines)
		if ok != (tc.tags != nil) || strings.Join(tags, "|") != strings.Join(tc.tags, "|") {
			t.Errorf("entityTags(%q) = %q, %v; want %q", tc.lines, tags, ok, tc.tags)
		}
	}
	if etagMatches([]string{"*"}, "", true) {
		t.Error(`"*" matched a key without a current value`)
	}
}
