package server

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

const testToken = "s3cret-T0ken"

// newCache returns a cache that the test closes.
func newCache(t *testing.T, opts tiercache.Options) *tiercache.Cache {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c, err := tiercache.New(opts)
	if err != nil {
		t.Fatalf("tiercache.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newTestServer serves cfg over real HTTP. A nil cfg.Cache means a fresh
// in-memory cache.
func newTestServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	if cfg.Cache == nil {
		cfg.Cache = newCache(t, tiercache.Options{})
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts
}

type response struct {
	method string
	status int
	header http.Header
	body   string
}

// do sends one request; path may contain percent-escapes, which are sent
// as they are. header holds name, value pairs.
func do(t *testing.T, ts *httptest.Server, method, path, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := *ts.Client() // a copy: parallel subtests share ts
	client.Timeout = 30 * time.Second
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{method: method, status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// wantStatus fails the test when r does not have status want. Every
// answer carries an X-Request-Id; an error answer has a JSON body with a
// documented code, a message that shows nothing internal, and the request
// id; a 503 says when to retry.
func wantStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d (body %q)", r.status, want, r.body)
	}
	id := r.header.Get("X-Request-Id")
	if id == "" {
		t.Errorf("no X-Request-Id in the answer")
	}
	if want == http.StatusServiceUnavailable {
		if n, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || n < 1 {
			t.Errorf("503 with Retry-After %q, want a number of seconds >= 1", r.header.Get("Retry-After"))
		}
	}
	if want < 400 || r.method == http.MethodHead {
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type %q, want application/json", ct)
	}
	e := decodeError(t, r)
	if !documentedCodes(t)[e.Error.Code] || e.Error.Message == "" || e.RequestID != id {
		t.Errorf("error body %q: want a documented code, a message and the request id %q", r.body, id)
	}
	for _, internal := range []string{"tiercache:", "redisstore", "dial tcp", "127.0.0.1", "rueidis", "i/o timeout"} {
		if strings.Contains(e.Error.Message, internal) {
			t.Errorf("error message %q shows %q", e.Error.Message, internal)
		}
	}
}

// decodeError decodes the JSON body of an error answer.
func decodeError(t *testing.T, r response) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Errorf("error body %q is not JSON: %v", r.body, err)
	}
	return e
}

func TestNew_Invalid(t *testing.T) {
	t.Parallel()
	c := newCache(t, tiercache.Options{})
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"nil cache", Config{}},
		{"negative MaxValueSize", Config{Cache: c, MaxValueSize: -1}},
		{"negative Timeout", Config{Cache: c, Timeout: -time.Second}},
		{"token with newline", Config{Cache: c, Token: testToken + "\n"}},
		{"token with space", Config{Cache: c, Token: "two " + testToken}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := New(tc.cfg)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if !strings.HasPrefix(err.Error(), "server: ") || strings.Contains(err.Error(), testToken) {
				t.Errorf("error %q: want the prefix \"server: \" and no token", err)
			}
		})
	}
}

func TestServer_Healthz(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	r := do(t, ts, "GET", "/healthz", "")
	wantStatus(t, r, http.StatusOK)
	if r.body != "{\"status\":\"ok\"}\n" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("got %q (%s)", r.body, r.header.Get("Content-Type"))
	}
}

// TestServer_RoundTrip writes, reads and deletes keys with ':' and '/'
// through HTTP against each L2, and checks that HTTP and the Go API name
// the same keys.
func TestServer_RoundTrip(t *testing.T) {
	t.Parallel()
	keys := []struct {
		name, path, key string
	}{
		{"colon", "user:42", "user:42"},
		{"slashes", "api:v1/users/7", "api:v1/users/7"},
		{"escaped slash", "a%2Fb", "a/b"},
		{"double slash escaped", "a%2F%2Fb", "a//b"},
		{"dot segment escaped", "x/%2E%2E/y", "x/../y"},
		{"trailing slash", "dir/", "dir/"},
		{"space and query characters", "a%20b%3Fc%23d", "a b?c#d"},
		{"unicode", "caf%C3%A9", "café"},
	}
	topologies := []struct {
		name string
		opts func(t *testing.T) tiercache.Options
		// firstGet is X-Cache of the first read after a write: the
		// writer's L1 keeps what it wrote, with Redis too.
		firstGet string
	}{
		{"memory", func(*testing.T) tiercache.Options { return tiercache.Options{} }, "hit-l1"},
		{"standalone", func(t *testing.T) tiercache.Options {
			srv := redistest.NewStandalone(t)
			return tiercache.Options{Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}}}
		}, "hit-l1"},
	}
	for _, topo := range topologies {
		t.Run(topo.name, func(t *testing.T) {
			t.Parallel()
			c := newCache(t, topo.opts(t))
			ts := newTestServer(t, Config{Cache: c})
			for _, k := range keys {
				t.Run(k.name, func(t *testing.T) {
					path := "/v1/cache/" + k.path
					body := "value of " + k.key
					wantStatus(t, do(t, ts, "PUT", path, body), http.StatusNoContent)

					r := do(t, ts, "GET", path, "")
					wantStatus(t, r, http.StatusOK)
					if r.body != body {
						t.Errorf("GET body %q, want %q", r.body, body)
					}
					if got := r.header.Get("X-Cache"); got != topo.firstGet {
						t.Errorf("first X-Cache %q, want %q", got, topo.firstGet)
					}
					if got := r.header.Get("Content-Type"); got != "application/octet-stream" {
						t.Errorf("Content-Type %q, want application/octet-stream", got)
					}
					if got := do(t, ts, "GET", path, "").header.Get("X-Cache"); got != "hit-l1" {
						t.Errorf("second X-Cache %q, want hit-l1", got)
					}

					var got []byte
					if err := c.Get(t.Context(), k.key, &got); err != nil || string(got) != body {
						t.Errorf("Go API Get(%q) = %q, %v; want %q", k.key, got, err, body)
					}

					h := do(t, ts, "HEAD", path, "")
					if h.status != http.StatusOK || h.body != "" || h.header.Get("Content-Length") != strconv.Itoa(len(body)) {
						t.Errorf("HEAD: %d, body %q, Content-Length %q", h.status, h.body, h.header.Get("Content-Length"))
					}

					wantStatus(t, do(t, ts, "DELETE", path, ""), http.StatusNoContent)
					r = do(t, ts, "GET", path, "")
					wantStatus(t, r, http.StatusNotFound)
					if got := r.header.Get("X-Cache"); got != "miss" {
						t.Errorf("X-Cache after DELETE %q, want miss", got)
					}
					wantStatus(t, do(t, ts, "DELETE", path, ""), http.StatusNoContent) // already gone
				})
			}
		})
	}
}

// TestServer_SharedRedis reads through one server what another wrote:
// both caches share the Redis L2.
func TestServer_SharedRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	opts := tiercache.Options{Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}}}
	a := newTestServer(t, Config{Cache: newCache(t, opts)})
	b := newTestServer(t, Config{Cache: newCache(t, opts)})

	wantStatus(t, do(t, a, "PUT", "/v1/cache/orders/9", "nine"), http.StatusNoContent)
	r := do(t, b, "GET", "/v1/cache/orders/9", "")
	wantStatus(t, r, http.StatusOK)
	if r.body != "nine" || r.header.Get("X-Cache") != "hit-l2" {
		t.Errorf("instance b: %q, X-Cache %q; want \"nine\", hit-l2", r.body, r.header.Get("X-Cache"))
	}
	wantStatus(t, do(t, a, "DELETE", "/v1/cache/orders/9", ""), http.StatusNoContent)
	wantStatus(t, do(t, a, "GET", "/v1/cache/orders/9", ""), http.StatusNotFound)
}

func TestServer_XCache(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		opts   tiercache.Options
		put    bool
		status int
		want   string
	}{
		{"hit-l1", tiercache.Options{}, true, http.StatusOK, "hit-l1"},
		{"hit-l2 without L1", tiercache.Options{L1: tiercache.L1Options{Disabled: true}}, true, http.StatusOK, "hit-l2"},
		{"miss", tiercache.Options{}, false, http.StatusNotFound, "miss"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newTestServer(t, Config{Cache: newCache(t, tc.opts)})
			if tc.put {
				wantStatus(t, do(t, ts, "PUT", "/v1/cache/k", "v"), http.StatusNoContent)
			}
			r := do(t, ts, "GET", "/v1/cache/k", "")
			wantStatus(t, r, tc.status)
			if got := r.header.Get("X-Cache"); got != tc.want {
				t.Errorf("X-Cache %q, want %q", got, tc.want)
			}
		})
	}
}

// TestServer_ContentType reads values that Go code wrote with each codec.
func TestServer_ContentType(t *testing.T) {
	t.Parallel()
	type user struct {
		Name string `json:"name" msgpack:"name"`
	}
	c := newCache(t, tiercache.Options{})
	ts := newTestServer(t, Config{Cache: c})
	for _, tc := range []struct {
		name, key string
		value     any
		want      string
	}{
		{"json for api: keys", "api:users/1", user{"ada"}, "application/json"},
		{"msgpack by default", "user:1", user{"ada"}, "application/msgpack"},
		{"raw bytes", "blob:1", []byte{0, 1, 2}, "application/octet-stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := c.Set(t.Context(), tc.key, tc.value); err != nil {
				t.Fatal(err)
			}
			r := do(t, ts, "GET", "/v1/cache/"+tc.key, "")
			wantStatus(t, r, http.StatusOK)
			if got := r.header.Get("Content-Type"); got != tc.want {
				t.Errorf("Content-Type %q, want %q", got, tc.want)
			}
			if tc.want == "application/json" {
				var u user
				if err := json.Unmarshal([]byte(r.body), &u); err != nil || u.Name != "ada" {
					t.Errorf("body %q does not decode to the value: %v", r.body, err)
				}
			}
		})
	}
}

func TestServer_PutTTL(t *testing.T) {
	t.Parallel()
	c := newCache(t, tiercache.Options{})
	ts := newTestServer(t, Config{Cache: c})
	for _, tc := range []struct {
		ttl  string
		want time.Duration
	}{
		{"30", 30 * time.Second},
		{"1.5", 1500 * time.Millisecond},
		{"90s", 90 * time.Second},
		{"2h", 2 * time.Hour},
		{"", tiercache.DefaultTTL}, // no ttl parameter
	} {
		t.Run("ttl="+tc.ttl, func(t *testing.T) {
			path := "/v1/cache/ttl:" + tc.ttl
			if tc.ttl != "" {
				path += "?ttl=" + tc.ttl + "&tags=a,b&tags=c"
			}
			before := time.Now()
			wantStatus(t, do(t, ts, "PUT", path, "v"), http.StatusNoContent)
			after := time.Now()
			res, err := c.Lookup(t.Context(), "ttl:"+tc.ttl, &tiercache.Raw{})
			if err != nil {
				t.Fatal(err)
			}
			// Expiry is stored with millisecond precision.
			lo, hi := before.Add(tc.want).Add(-time.Millisecond), after.Add(tc.want).Add(time.Millisecond)
			if res.ExpiresAt.Before(lo) || res.ExpiresAt.After(hi) {
				t.Errorf("expires at %v, want within [%v, %v]", res.ExpiresAt, lo, hi)
			}
		})
	}
}

func TestServer_BadRequests(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{MaxValueSize: 16})
	long := strings.Repeat("k", tiercache.DefaultMaxKeyLength+1)
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"ttl not a duration", "PUT", "/v1/cache/k?ttl=soon", "v", http.StatusBadRequest},
		{"ttl zero seconds", "PUT", "/v1/cache/k?ttl=0", "v", http.StatusBadRequest},
		{"ttl zero duration", "PUT", "/v1/cache/k?ttl=0s", "v", http.StatusBadRequest},
		{"ttl negative", "PUT", "/v1/cache/k?ttl=-5s", "v", http.StatusBadRequest},
		{"ttl negative seconds", "PUT", "/v1/cache/k?ttl=-5", "v", http.StatusBadRequest},
		{"ttl NaN", "PUT", "/v1/cache/k?ttl=NaN", "v", http.StatusBadRequest},
		{"ttl overflows", "PUT", "/v1/cache/k?ttl=1e300", "v", http.StatusBadRequest},
		{"ttl below a nanosecond", "PUT", "/v1/cache/k?ttl=1e-10", "v", http.StatusBadRequest},
		{"ttl empty", "PUT", "/v1/cache/k?ttl=", "v", http.StatusBadRequest},
		{"ttl twice", "PUT", "/v1/cache/k?ttl=1s&ttl=2s", "v", http.StatusBadRequest},
		{"empty tag in the middle", "PUT", "/v1/cache/k?tags=a,,b", "v", http.StatusBadRequest},
		{"empty tag at the end", "PUT", "/v1/cache/k?tags=a,", "v", http.StatusBadRequest},
		{"empty tags", "PUT", "/v1/cache/k?tags=", "v", http.StatusBadRequest},
		{"tag too long", "PUT", "/v1/cache/k?tags=" + strings.Repeat("t", 1025), "v", http.StatusBadRequest},
		{"too many tags", "PUT", "/v1/cache/k?tags=" + strings.Repeat("t,", 64) + "t", "v", http.StatusBadRequest},
		{"unknown parameter", "PUT", "/v1/cache/k?tll=30s", "v", http.StatusBadRequest},
		{"put empty key", "PUT", "/v1/cache/", "v", http.StatusBadRequest},
		{"get empty key", "GET", "/v1/cache/", "", http.StatusBadRequest},
		{"delete empty key", "DELETE", "/v1/cache/", "", http.StatusBadRequest},
		{"put key too long", "PUT", "/v1/cache/" + long, "v", http.StatusBadRequest},
		{"get key too long", "GET", "/v1/cache/" + long, "", http.StatusBadRequest},
		{"delete key too long", "DELETE", "/v1/cache/" + long, "", http.StatusBadRequest},
		{"empty segment", "PUT", "/v1/cache/a//b", "v", http.StatusBadRequest},
		{"dot-dot segment", "GET", "/v1/cache/a/../b", "", http.StatusBadRequest},
		{"body too large", "PUT", "/v1/cache/k", strings.Repeat("x", 17), http.StatusRequestEntityTooLarge},
		{"body at the limit", "PUT", "/v1/cache/k", strings.Repeat("x", 16), http.StatusNoContent},
		{"empty body", "PUT", "/v1/cache/empty", "", http.StatusNoContent},
		{"unknown path", "GET", "/v1/nothing", "", http.StatusNotFound},
		{"method not allowed", "POST", "/v1/cache/k", "", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			wantStatus(t, do(t, ts, tc.method, tc.path, tc.body), tc.want)
		})
	}
}

func TestServer_MethodNotAllowedListsMethods(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	r := do(t, ts, "PATCH", "/v1/cache/k", "")
	wantStatus(t, r, http.StatusMethodNotAllowed)
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		if !strings.Contains(r.header.Get("Allow"), m) {
			t.Errorf("Allow %q lacks %s", r.header.Get("Allow"), m)
		}
	}
}

// TestServer_CacheValueLimit checks that the cache's own limit, smaller
// than the server's, also answers 413.
func TestServer_CacheValueLimit(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{Cache: newCache(t, tiercache.Options{MaxValueSize: 8})})
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/k", "123456789"), http.StatusRequestEntityTooLarge)
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/k", "12345678"), http.StatusNoContent)
}

// TestServer_Unavailable uses a closed cache, whose every L2 operation
// fails.
func TestServer_Unavailable(t *testing.T) {
	t.Parallel()
	c := newCache(t, tiercache.Options{})
	ts := newTestServer(t, Config{Cache: c})
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			wantStatus(t, do(t, ts, m, "/v1/cache/k", "v"), http.StatusServiceUnavailable)
		})
	}
}

// TestServer_RedisDown kills Redis: reads and writes answer 503 within
// the server's timeout.
func TestServer_RedisDown(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	// Without a recovery queue, failed writes answer 503 (with one, 202:
	// see TestServer_Queued).
	ts := newTestServer(t, Config{Timeout: 500 * time.Millisecond, Cache: newCache(t, tiercache.Options{
		Redis:             tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		L1:                tiercache.L1Options{Disabled: true},
		RecoveryQueueSize: -1,
	})})
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/k", "v"), http.StatusNoContent)
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		t.Run(m, func(t *testing.T) {
			wantStatus(t, do(t, ts, m, "/v1/cache/k", "v"), http.StatusServiceUnavailable)
		})
	}
}

func TestServer_Auth(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{Token: testToken})
	const auth = "Authorization"
	for _, tc := range []struct {
		name, method, path string
		header             []string
		want               int
	}{
		{"put without token", "PUT", "/v1/cache/k", nil, http.StatusUnauthorized},
		{"put with wrong token", "PUT", "/v1/cache/k", []string{auth, "Bearer wrong"}, http.StatusUnauthorized},
		{"put with token prefix", "PUT", "/v1/cache/k", []string{auth, "Bearer " + testToken[:4]}, http.StatusUnauthorized},
		{"put with basic auth", "PUT", "/v1/cache/k", []string{auth, "Basic " + testToken}, http.StatusUnauthorized},
		{"put with bare token", "PUT", "/v1/cache/k", []string{auth, testToken}, http.StatusUnauthorized},
		{"put with token", "PUT", "/v1/cache/k", []string{auth, "Bearer " + testToken}, http.StatusNoContent},
		{"put with lower-case scheme", "PUT", "/v1/cache/k", []string{auth, "bearer " + testToken}, http.StatusNoContent},
		{"delete without token", "DELETE", "/v1/cache/k", nil, http.StatusUnauthorized},
		{"delete with token", "DELETE", "/v1/cache/gone", []string{auth, "Bearer " + testToken}, http.StatusNoContent},
		{"post without token", "POST", "/v1/invalidate", nil, http.StatusUnauthorized},
		{"post with token", "POST", "/v1/invalidate", []string{auth, "Bearer " + testToken}, http.StatusBadRequest},
		{"get without token", "GET", "/v1/cache/missing", nil, http.StatusUnauthorized},
		{"head without token", "HEAD", "/v1/cache/missing", nil, http.StatusUnauthorized},
		{"get with token", "GET", "/v1/cache/missing", []string{auth, "Bearer " + testToken}, http.StatusNotFound},
		{"get with wrong token", "GET", "/v1/cache/missing", []string{auth, "Bearer wrong"}, http.StatusUnauthorized},
		{"stats without token", "GET", "/v1/stats", nil, http.StatusUnauthorized},
		{"stats with token", "GET", "/v1/stats", []string{auth, "Bearer " + testToken}, http.StatusOK},
		{"warm list without token", "GET", "/v1/warm", nil, http.StatusUnauthorized},
		{"metrics without token", "GET", "/metrics", nil, http.StatusUnauthorized},
		{"unknown path without token", "GET", "/v1/nothing", nil, http.StatusUnauthorized},
		{"healthz without token", "GET", "/healthz", nil, http.StatusOK},
		{"readyz without token", "GET", "/readyz", nil, http.StatusOK},
		{"dashboard page without token", "GET", "/", nil, http.StatusOK},
		{"dashboard script without token", "GET", "/assets/app.js", nil, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, ts, tc.method, tc.path, "v", tc.header...)
			wantStatus(t, r, tc.want)
			if tc.want == http.StatusUnauthorized && r.header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("WWW-Authenticate %q, want Bearer", r.header.Get("WWW-Authenticate"))
			}
			if strings.Contains(r.body, testToken) {
				t.Errorf("the answer %q echoes the token", r.body)
			}
		})
	}
}

func TestServer_RequestLog(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		level   slog.Level
		wantLog bool
	}{
		{slog.LevelDebug, true},
		{slog.LevelInfo, false},
	} {
		t.Run(tc.level.String(), func(t *testing.T) {
			t.Parallel()
			var buf tiercachetest.Buffer
			logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tc.level}))
			ts := newTestServer(t, Config{Token: testToken, Logger: logger})
			wantStatus(t, do(t, ts, "PUT", "/v1/cache/user:7", "v", "Authorization", "Bearer "+testToken), http.StatusNoContent)
			wantStatus(t, do(t, ts, "DELETE", "/v1/cache/user:7", "", "Authorization", "Bearer nope"), http.StatusUnauthorized)
			// The handler has returned before the client sees the answer,
			// so the lines are complete.
			log := buf.String()
			if !tc.wantLog {
				if log != "" {
					t.Errorf("logged at %v: %s", tc.level, log)
				}
				return
			}
			for _, want := range []string{"method=PUT path=/v1/cache/user:7 status=204 duration=", "method=DELETE path=/v1/cache/user:7 status=401"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
			if strings.Contains(log, testToken) || strings.Contains(log, "nope") {
				t.Errorf("log contains a token:\n%s", log)
			}
		})
	}
}

func TestServer_RecoverPanics(t *testing.T) {
	t.Parallel()
	var buf tiercachetest.Buffer
	s := &Server{logger: slog.New(slog.NewTextHandler(&buf, nil))}

	t.Run("before the answer", func(t *testing.T) {
		h := s.logRequests(s.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/x", nil))
		if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), `"error"`) {
			t.Errorf("got %d %q, want 500 with a JSON error", w.Code, w.Body.String())
		}
		if !strings.Contains(buf.String(), "panic=boom") {
			t.Errorf("panic not logged: %s", buf.String())
		}
	})
	t.Run("after the answer started", func(t *testing.T) {
		h := s.recoverPanics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusOK)
			panic("late boom")
		}))
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/x", nil))
	})
	t.Run("over HTTP", func(t *testing.T) {
		ts := httptest.NewServer(s.requestIDs(s.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(errors.New("boom")) }))))
		defer ts.Close()
		wantStatus(t, do(t, ts, "GET", "/", ""), http.StatusInternalServerError)
	})
}
