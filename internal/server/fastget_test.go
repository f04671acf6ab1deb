package server

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tiercache/tiercache"
)

// TestCacheReads_SameAsMux checks that cache reads answered without the
// mux (plain paths) and through it (escaped paths) find the same keys,
// and that the metrics name the route either way.
func TestCacheReads_SameAsMux(t *testing.T) {
	c, err := tiercache.New(tiercache.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := prometheus.NewRegistry()
	s, err := New(Config{Cache: c, Logger: slog.New(slog.DiscardHandler), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	for _, key := range []string{"plain", "a b", "a/b", "é"} {
		if err := c.Set(t.Context(), key, []byte("value of "+key)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/cache/plain", "value of plain"},
		{"HEAD", "/v1/cache/plain", "value of plain"}, // the recorder keeps what net/http drops on HEAD
		{"GET", "/v1/cache/a%20b", "value of a b"},
		{"GET", "/v1/cache/a/b", "value of a/b"},
		{"GET", "/v1/cache/a%2Fb", "value of a/b"},
		{"GET", "/v1/cache/%C3%A9", "value of é"},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(tc.method, tc.path, nil))
		if w.Code != http.StatusOK || w.Body.String() != tc.body || w.Header().Get("X-Cache") != "hit-l1" || w.Header().Get("ETag") == "" {
			t.Errorf("%s %s: %d %q, X-Cache %q, ETag %q; want 200 %q from L1 with an ETag",
				tc.method, tc.path, w.Code, w.Body, w.Header().Get("X-Cache"), w.Header().Get("ETag"), tc.body)
		}
	}
	for _, path := range []string{"/v1/cache/missing", "/v1/cache/plain?x=1"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != http.StatusNotFound && w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"code"`) {
			t.Errorf("GET %s: %d %s; want a JSON 404 or 400", path, w.Code, w.Body)
		}
	}
	got := testutil.ToFloat64(s.httpMetrics.requests.WithLabelValues(getPattern, "GET", "200"))
	if got != 5 {
		t.Errorf("requests_total{route=%q,method=GET,code=200} = %v, want 5", getPattern, got)
	}
}

// TestGet_ContentLength checks over a real connection that GET and HEAD
// carry the value's Content-Length whether the handler sets it (large
// values) or net/http does (small ones), never a chunked body.
func TestGet_ContentLength(t *testing.T) {
	c, err := tiercache.New(tiercache.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := New(Config{Cache: c, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for _, n := range []int{0, 1, autoContentLength, autoContentLength + 1, 100_000} {
		key := "len-" + strconv.Itoa(n)
		if err := c.Set(t.Context(), key, []byte(strings.Repeat("x", n))); err != nil {
			t.Fatal(err)
		}
		for _, method := range []string{"GET", "HEAD"} {
			req, _ := http.NewRequestWithContext(t.Context(), method, ts.URL+"/v1/cache/"+key, nil)
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantBody := n
			if method == "HEAD" {
				wantBody = 0
			}
			if resp.StatusCode != 200 || resp.ContentLength != int64(n) || len(resp.TransferEncoding) > 0 || len(body) != wantBody {
				t.Errorf("%s of %d bytes: %d, Content-Length %d, Transfer-Encoding %v, %d bytes of body",
					method, n, resp.StatusCode, resp.ContentLength, resp.TransferEncoding, len(body))
			}
		}
	}
}
