package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestHTTPMetrics_Traffic: after real traffic, /metrics has the requests
// by route, method and code, the duration histogram by route and the
// response bytes, on the memory store and on real Redis; requests
// answered before the mux (a 401) count under the route they asked for,
// unknown paths and methods under "unmatched"; no label carries a key;
// /v1/stats has the same figures in its http section.
func TestHTTPMetrics_Traffic(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts func(t *testing.T) tiercache.Options
	}{
		{"memory", func(*testing.T) tiercache.Options { return tiercache.Options{} }},
		{"redis", func(t *testing.T) tiercache.Options {
			srv := redistest.NewStandalone(t)
			return tiercache.Options{Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ts := newObservedServer(t, tc.opts(t), Config{Token: testToken})
			auth := []string{"Authorization", "Bearer " + testToken}
			const key = "user:k3y-that-must-not-be-a-label"
			wantStatus(t, do(t, ts, "PUT", "/v1/cache/"+key, "value", auth...), http.StatusNoContent)
			for range 3 {
				wantStatus(t, do(t, ts, "GET", "/v1/cache/"+key, "", auth...), http.StatusOK)
			}
			wantStatus(t, do(t, ts, "HEAD", "/v1/cache/"+key, "", auth...), http.StatusOK)
			wantStatus(t, do(t, ts, "GET", "/v1/cache/absent", "", auth...), http.StatusNotFound)
			wantStatus(t, do(t, ts, "PUT", "/v1/cache/"+key, "no token"), http.StatusUnauthorized)
			wantStatus(t, do(t, ts, "GET", "/no/such/"+key, "", auth...), http.StatusNotFound)
			wantStatus(t, do(t, ts, "PATCH", "/v1/cache/"+key, "", auth...), http.StatusMethodNotAllowed)
			wantStatus(t, do(t, ts, "BREW", "/v1/cache/"+key, "", auth...), http.StatusMethodNotAllowed)

			r := do(t, ts, "GET", "/metrics", "", auth...)
			wantStatus(t, r, http.StatusOK)
			const get, put = `route="GET /v1/cache/{key...}"`, `route="PUT /v1/cache/{key...}"`
			for _, want := range []string{
				`tiercache_http_requests_total{code="204",method="PUT",` + put + `} 1`,
				`tiercache_http_requests_total{code="401",method="PUT",` + put + `} 1`,
				`tiercache_http_requests_total{code="200",method="GET",` + get + `} 3`,
				`tiercache_http_requests_total{code="200",method="HEAD",` + get + `} 1`,
				`tiercache_http_requests_total{code="404",method="GET",` + get + `} 1`,
				`tiercache_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
				`tiercache_http_requests_total{code="405",method="PATCH",route="unmatched"} 1`,
				`tiercache_http_requests_total{code="405",method="other",route="unmatched"} 1`,
				`tiercache_http_request_duration_seconds_count{` + get + `} 5`,
				`tiercache_http_request_duration_seconds_bucket{` + get + `,le="+Inf"} 5`,
				`tiercache_http_request_duration_seconds_bucket{` + get + `,le="2.5e-05"} `,
				`tiercache_http_response_bytes_total{` + get + `} `,
				`tiercache_http_requests_in_flight 1`, // this scrape
				`tiercache_requests_total{op="get",result="hit_l1"} `,
			} {
				if !strings.Contains(r.body, want) {
					t.Errorf("/metrics lacks %q", want)
				}
			}
			if strings.Contains(r.body, "k3y") {
				t.Error("/metrics names a key")
			}
			// 3 GETs of "value" and the JSON of the 404.
			if v := metricValue(t, r.body, `tiercache_http_response_bytes_total{`+get+`}`); v <= 15 {
				t.Errorf("response bytes of the GET route: %v", v)
			}

			r = do(t, ts, "GET", "/v1/stats", "", auth...)
			wantStatus(t, r, http.StatusOK)
			var rep struct {
				Topology string      `json:"topology"`
				HTTP     *httpReport `json:"http"`
			}
			if err := json.Unmarshal([]byte(r.body), &rep); err != nil {
				t.Fatal(err)
			}
			h := rep.HTTP
			if rep.Topology == "" || h == nil {
				t.Fatalf("/v1/stats without the cache's report or the http section: %s", r.body)
			}
			// The 10 requests above and the scrape; this one is in flight, counted once answered.
			if h.Requests != 11 || h.Codes["200"] != 5 || h.Codes["404"] != 2 || h.Codes["405"] != 2 || h.InFlight != 1 ||
				h.Duration.Count != 11 || len(h.Duration.Buckets) != len(httpDurationBuckets) {
				t.Errorf("/v1/stats http: %+v", h)
			}
			var found bool
			for _, rr := range h.Routes {
				if rr.Route == "GET /v1/cache/{key...}" {
					found = true
					last := rr.Duration.Buckets[len(rr.Duration.Buckets)-1]
					if rr.Requests != 5 || rr.Codes["200"] != 4 || rr.Duration.Count != 5 || last.LE != 10 || last.Count > 5 || rr.ResponseBytes <= 15 {
						t.Errorf("/v1/stats http route: %+v", rr)
					}
				}
			}
			if !found {
				t.Errorf("/v1/stats http routes: %+v", h.Routes)
			}
		})
	}
}

// metricValue returns the value of the series line that starts with
// series in a /metrics body.
func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return v
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

// TestHTTPMetrics_Connections: the open connections gauge follows
// keep-alive connections as they open and close, the accepted counter
// counts them, and requests in flight go back to zero.
func TestHTTPMetrics_Connections(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s, err := New(Config{Cache: newCache(t, tiercache.Options{}), Logger: slog.New(slog.DiscardHandler), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.ConnState = s.ConnState()
	ts.Start()
	t.Cleanup(ts.Close)
	m := s.httpMetrics

	waitGauge := func(what string, g prometheus.Gauge, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for gaugeValue(g) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v, want %v", what, gaugeValue(g), want)
			}
			time.Sleep(5 * time.Millisecond) // pacing the poll
		}
	}
	var conns []net.Conn
	for i := range 3 {
		c, err := net.Dial("tcp", ts.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
		// Two requests on the same connection: it stays open between them.
		for range 2 {
			if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Close {
				t.Fatalf("GET /healthz on connection %d: %d, close %v", i, resp.StatusCode, resp.Close)
			}
		}
		waitGauge(fmt.Sprintf("open connections after %d", i+1), m.connsOpen, float64(i+1))
	}
	if got := counterValue(m.connsAccepted); got != 3 {
		t.Errorf("accepted connections %v, want 3", got)
	}
	for i, c := range conns {
		c.Close()
		waitGauge(fmt.Sprintf("open connections after closing %d", i+1), m.connsOpen, float64(len(conns)-i-1))
	}
	waitGauge("requests in flight", m.inFlight, 0)
	if rep := m.report(); rep.Requests != 6 || rep.Codes["200"] != 6 || rep.ConnectionsAccepted != 3 || rep.ConnectionsOpen != 0 {
		t.Errorf("/v1/stats http: %+v", rep)
	}
}

// TestHTTPMetrics_Off: without a registry the server has no HTTP metrics,
// no ConnState hook and no http section in /v1/stats; two servers on one
// registry share the metrics.
func TestHTTPMetrics_Off(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{})
	r := do(t, ts, "GET", "/v1/stats", "")
	wantStatus(t, r, http.StatusOK)
	if strings.Contains(r.body, `"http"`) {
		t.Errorf("/v1/stats without metrics has an http section: %s", r.body)
	}
	s, err := New(Config{Cache: newCache(t, tiercache.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	if s.ConnState() != nil {
		t.Error("ConnState hook without metrics")
	}

	reg := prometheus.NewRegistry()
	var servers []*Server
	for range 2 {
		s, err := New(Config{Cache: newCache(t, tiercache.Options{}), Metrics: reg})
		if err != nil {
			t.Fatalf("a second server on the same registry: %v", err)
		}
		servers = append(servers, s)
	}
	if servers[0].httpMetrics.requests != servers[1].httpMetrics.requests {
		t.Error("two servers on one registry do not share the request counter")
	}
}

// TestDocs_HTTPMetrics compares the tiercache_http_* rows of
// docs/metrics.md's tables with what the server exports after traffic:
// the same names, types and labels. The files under deploy/ may name
// only those. (tiercacheprom's tests check the recorder's metrics.)
func TestDocs_HTTPMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s, err := New(Config{Cache: newCache(t, tiercache.Options{}), Logger: slog.New(slog.DiscardHandler), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.ConnState = s.ConnState()
	ts.Start()
	t.Cleanup(ts.Close)
	wantStatus(t, do(t, ts, "GET", "/healthz", ""), http.StatusOK)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]string{} // name: "type labels..."
	for _, mf := range mfs {
		var labels []string
		if len(mf.GetMetric()) > 0 {
			for _, lp := range mf.GetMetric()[0].GetLabel() {
				labels = append(labels, lp.GetName())
			}
		}
		slices.Sort(labels)
		exported[mf.GetName()] = strings.Join(append([]string{strings.ToLower(mf.GetType().String())}, labels...), " ")
	}
	if len(exported) != 6 {
		t.Errorf("exported %d HTTP metric families, want 6: %v", len(exported), exported)
	}

	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(tiercache_http_[a-z0-9_]+)` \\| ([a-z]+) \\|([^|]*)\\|")
	documented := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		var labels []string
		for _, l := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(m[3], -1) {
			labels = append(labels, l[1])
		}
		slices.Sort(labels)
		documented[m[1]] = strings.Join(append([]string{m[2]}, labels...), " ")
	}
	for name, want := range exported {
		if got, ok := documented[name]; !ok {
			t.Errorf("docs/metrics.md has no row for %s", name)
		} else if got != want {
			t.Errorf("docs/metrics.md: %s is %q, documented as %q", name, want, got)
		}
	}
	for name := range documented {
		if _, ok := exported[name]; !ok {
			t.Errorf("docs/metrics.md documents %s, which the server does not export", name)
		}
	}

	ref := regexp.MustCompile(`tiercache_http_[a-z0-9_]+`)
	for _, f := range []string{"prometheus/alerts.yml", "prometheus/alerts_test.yml", "grafana/tiercache.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "deploy", f))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range ref.FindAllString(string(b), -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if strings.HasSuffix(name, "_seconds"+suffix) {
					name = strings.TrimSuffix(name, suffix)
				}
			}
			if _, ok := exported[name]; !ok {
				t.Errorf("deploy/%s names %s, which the server does not export", f, name)
			}
		}
	}
}

// newMeasuredServer serves cfg over real HTTP as newTestServer does, with
// the server's ConnState hook, as tiercache serve sets it.
func newMeasuredServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.ConnState = s.ConnState()
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// TestHTTPMetrics_Panics: a handler that panics is counted with the 500
// the server answered; one that panics after its answer started, which
// aborts the connection, with the status it had sent; neither is left in
// flight.
func TestHTTPMetrics_Panics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s, err := New(Config{Cache: newCache(t, tiercache.Options{}), Logger: slog.New(slog.DiscardHandler), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	mux.HandleFunc("GET /late", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		panic("late boom")
	})
	ts := httptest.NewServer(s.requestIDs(s.measure(mux, s.recoverPanics(mux))))
	t.Cleanup(ts.Close)
	ts.Config.ErrorLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)
	wantStatus(t, do(t, ts, "GET", "/boom", ""), http.StatusInternalServerError)
	// On a connection of its own: a client would retry the GET.
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET /late HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
		if _, err := io.ReadAll(resp.Body); err == nil {
			t.Errorf("GET /late: %d, a whole answer", resp.StatusCode)
		}
	}
	rep := s.httpMetrics.report()
	got := map[string]map[string]uint64{}
	for _, r := range rep.Routes {
		got[r.Route] = r.Codes
	}
	if got["GET /boom"]["500"] != 1 || got["GET /late"]["202"] != 1 || rep.InFlight != 0 || rep.Requests != 2 {
		t.Errorf("after two panics: %+v", rep)
	}
}
