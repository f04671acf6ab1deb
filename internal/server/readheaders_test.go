package server

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
)

// TestReadHeaders_SameAsCacheHeaders: the shared headers are those
// cacheHeaders writes for the same answer, whatever the second and the
// fraction of a second it is read at, and a set is shared by the answers
// that carry the same headers.
func TestReadHeaders_SameAsCacheHeaders(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var rh readHeaders
	for _, tc := range []struct {
		name string
		res  tiercache.Result
	}{
		{"TTL", tiercache.Result{Source: tiercache.SourceL1, CreatedAt: base.Add(-90500 * time.Millisecond), ExpiresAt: base.Add(3300 * time.Millisecond)}},
		{"no TTL", tiercache.Result{Source: tiercache.SourceL2, CreatedAt: base.Add(-250 * time.Millisecond)}},
		{"no creation time", tiercache.Result{Source: tiercache.SourceL1}},
		{"stale", tiercache.Result{Source: tiercache.SourceStale, Stale: true, CreatedAt: base.Add(-time.Hour), ExpiresAt: base.Add(-1500 * time.Millisecond)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			etag := `"` + fmt.Sprintf("%016x", len(tc.name)) + `"`
			var prev *headerSet
			var prevWant http.Header
			for step := range 40 {
				now := base.Add(time.Duration(step) * 150 * time.Millisecond) // crosses whole seconds of age and TTL
				want := http.Header{}
				cacheHeaders(want, tc.res, etag, now)
				hs := rh.get(tc.res, etag, "text/plain", now)
				got := http.Header{}
				hs.setCache(got)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("at %v: %v, want %v", now.Sub(base), got, want)
				}
				if ct := hs.contentType; len(ct) != 1 || ct[0] != "text/plain" {
					t.Fatalf("Content-Type %q", ct)
				}
				if prev != nil && (hs == prev) != (fmt.Sprint(want) == fmt.Sprint(prevWant)) {
					t.Fatalf("at %v: set shared %v, headers unchanged %v", now.Sub(base), hs == prev, fmt.Sprint(want) == fmt.Sprint(prevWant))
				}
				prev, prevWant = hs, want
			}
		})
	}
}

// TestReadHeaders_ManyValues: with far more values than slots, each
// answer still gets its own value's headers, and a header added to an
// answer does not reach the shared set.
func TestReadHeaders_ManyValues(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	var rh readHeaders
	for round := range 2 {
		for i := range 3 * readHeaderSlots {
			etag := fmt.Sprintf(`"%016x"`, i)
			res := tiercache.Result{Source: tiercache.SourceL1, CreatedAt: now.Add(-time.Duration(i%100) * time.Second), ExpiresAt: now.Add(time.Minute)}
			h := http.Header{}
			rh.get(res, etag, "application/json", now).setCache(h)
			if h.Get("Etag") != etag || h.Get("Age") != fmt.Sprint(i%100) {
				t.Fatalf("round %d, value %d: ETag %q, Age %q", round, i, h.Get("Etag"), h.Get("Age"))
			}
			h.Add("Etag", "added")
			h.Add("Cache-Status", "added")
		}
	}
	h := http.Header{}
	rh.get(tiercache.Result{Source: tiercache.SourceL1}, `"0000000000000000"`, "application/json", now).setCache(h)
	for name, vals := range h {
		if len(vals) != 1 || strings.Contains(vals[0], "added") {
			t.Errorf("%s: %q", name, vals)
		}
	}
}

// TestNextRequestID: ids made in blocks are distinct and sane, each a
// header value of its own.
func TestNextRequestID(t *testing.T) {
	t.Parallel()
	s1, s2 := &Server{}, &Server{}
	seen := map[string]bool{}
	for i := range 3 * idBlockSize {
		for _, s := range []*Server{s1, s2} {
			v := s.nextRequestID()
			if len(v) != 1 || cap(v) != 1 || !saneRequestID(v[0]) || seen[v[0]] {
				t.Fatalf("id %d: %q (cap %d), seen before: %v", i, v, cap(v), seen[v[0]])
			}
			seen[v[0]] = true
		}
	}
	if id := newRequestID(); seen[id] {
		t.Errorf("newRequestID %q was handed out already", id)
	}
}

// TestGetL1_Allocations: a GET answered from L1 allocates at most once in
// the handler chain (the request's lazy deadline), with the token, the
// metrics and a fresh request id.
func TestGetL1_Allocations(t *testing.T) { // not parallel: AllocsPerRun
	c := newCache(t, tiercache.Options{})
	s, err := New(Config{Cache: c, Token: testToken, Metrics: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	request := func(method, body string) *http.Request {
		r := httptest.NewRequest(method, "/v1/cache/k", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+testToken)
		return r
	}
	put := &statusRecorder{ResponseWriter: &discardWriter{h: http.Header{}}}
	h.ServeHTTP(put, request(http.MethodPut, strings.Repeat("v", 100)))
	get := request(http.MethodGet, "")
	check := &statusRecorder{ResponseWriter: &discardWriter{h: http.Header{}}}
	h.ServeHTTP(check, get)
	if put.status() != http.StatusNoContent || check.status() != http.StatusOK || check.bytes != 100 {
		t.Fatalf("PUT: %d; GET: %d, %d bytes", put.status(), check.status(), check.bytes)
	}
	w := &discardWriter{h: http.Header{}}
	allocs := testing.AllocsPerRun(1000, func() {
		delete(get.Header, requestIDHeader)
		h.ServeHTTP(w, get)
	})
	limit := 1.0
	if raceEnabled {
		limit = 3
	}
	if allocs > limit {
		t.Errorf("%v allocations per GET from L1, want at most %v", allocs, limit)
	}
}
