package server

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// newObservedServer serves a cache built with the Prometheus recorder of
// NewMetrics, as tiercache serve does; opts.Recorder is set here.
func newObservedServer(t *testing.T, opts tiercache.Options, cfg Config) *httptest.Server {
	t.Helper()
	rec, gatherer, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	opts.Recorder = rec
	cfg.Cache = newCache(t, opts)
	cfg.Metrics = gatherer
	return newTestServer(t, cfg)
}

func TestServer_Metrics(t *testing.T) {
	t.Parallel()
	ts := newObservedServer(t, tiercache.Options{}, Config{})
	do(t, ts, "PUT", "/v1/cache/k", "v")
	do(t, ts, "GET", "/v1/cache/k", "")
	do(t, ts, "GET", "/v1/cache/missing", "")
	r := do(t, ts, "GET", "/metrics", "")
	wantStatus(t, r, http.StatusOK)
	for _, want := range []string{
		`tiercache_requests_total{op="get",result="hit_l1"} 1`,
		`tiercache_requests_total{op="get",result="miss"} 1`,
		`tiercache_l2_operations_total{op="set",result="ok"} 1`,
		`tiercache_breaker_state{state="closed"} 1`,
		`go_goroutines `,
		`process_`,
	} {
		if !strings.Contains(r.body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Without a gatherer there is nothing to export.
	plain := newTestServer(t, Config{})
	wantStatus(t, do(t, plain, "GET", "/metrics", ""), http.StatusNotFound)
}

func TestServer_ReadyzAndStats(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	ts := newObservedServer(t, tiercache.Options{
		Redis:   tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		Retries: -1,
	}, Config{})
	do(t, ts, "PUT", "/v1/cache/k", "v")
	do(t, ts, "GET", "/v1/cache/k", "")

	r := do(t, ts, "GET", "/readyz", "")
	wantStatus(t, r, http.StatusOK)
	var h tiercache.Health
	if err := json.Unmarshal([]byte(r.body), &h); err != nil {
		t.Fatal(err)
	}
	if h.Status != tiercache.Healthy || h.Checks.Connectivity.Status != tiercache.CheckPass {
		t.Fatalf("readyz %s", r.body)
	}

	r = do(t, ts, "GET", "/v1/stats", "")
	wantStatus(t, r, http.StatusOK)
	var rep struct {
		Topology string `json:"topology"`
		Stats    struct {
			Requests map[string]map[string]uint64 `json:"requests"`
		} `json:"counters"`
		Nodes []struct {
			Addr       string `json:"addr"`
			UsedMemory int64  `json:"used_memory"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(r.body), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Topology != "standalone" || rep.Stats.Requests["get"]["hit_l1"] != 1 || len(rep.Nodes) != 1 ||
		rep.Nodes[0].Addr != srv.Addr || rep.Nodes[0].UsedMemory <= 0 {
		t.Fatalf("/v1/stats %s", r.body)
	}

	// Redis short of memory: degraded, and still ready.
	squeezeMemory(t, srv)
	r = do(t, ts, "GET", "/readyz", "")
	wantStatus(t, r, http.StatusOK)
	h = tiercache.Health{}
	if err := json.Unmarshal([]byte(r.body), &h); err != nil {
		t.Fatal(err)
	}
	if m := h.Checks.Memory; h.Status != tiercache.Degraded || m.Status != tiercache.CheckWarn || m.UsageRatio < tiercache.MemoryWarnRatio {
		t.Fatalf("readyz with Redis short of memory: %s", r.body)
	}

	// Redis stopped: not ready.
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	r = do(t, ts, "GET", "/readyz", "")
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"status":"unhealthy"`) {
		t.Fatalf("readyz with Redis down: %d %s", r.status, r.body)
	}
	r = do(t, ts, "GET", "/v1/stats", "")
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `"up":false`) {
		t.Fatalf("/v1/stats with Redis down: %s", r.body)
	}
}

func TestServer_Dashboard(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{Token: testToken})
	r := do(t, ts, "GET", "/", "")
	wantStatus(t, r, http.StatusOK)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q", ct)
	}
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	// Every asset the page names is served, from this server.
	refs := regexp.MustCompile(`(?:src|href)="([^"]+)"`).FindAllStringSubmatch(r.body, -1)
	if len(refs) < 4 {
		t.Fatalf("the page names %d assets", len(refs))
	}
	for _, m := range refs {
		ref := m[1]
		if strings.HasPrefix(ref, "data:") {
			continue
		}
		if !strings.HasPrefix(ref, "/assets/") {
			t.Errorf("the page loads %q from elsewhere", ref)
			continue
		}
		wantStatus(t, do(t, ts, "GET", ref, ""), http.StatusOK)
	}
	wantStatus(t, do(t, ts, "GET", "/assets/vendor/uplot/LICENSE", ""), http.StatusOK)
	wantStatus(t, do(t, ts, "GET", "/assets/", ""), http.StatusNotFound)
	wantStatus(t, do(t, ts, "GET", "/assets/nothing.js", ""), http.StatusNotFound)
	wantStatus(t, do(t, ts, "GET", "/no-such-page", ""), http.StatusUnauthorized)
	wantStatus(t, do(t, ts, "GET", "/no-such-page", "", "Authorization", "Bearer "+testToken), http.StatusNotFound)

	// No script of ours fetches from another origin.
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(path, "/vendor/") {
			return err
		}
		b, err := assets.ReadFile(path)
		if err != nil {
			return err
		}
		if regexp.MustCompile(`https?://`).Match(b) {
			t.Errorf("%s names an absolute URL", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// squeezeMemory sets srv's maxmemory just above the memory it uses, so
// that the cache reports Redis short of memory.
func squeezeMemory(t *testing.T, srv *redistest.Server) {
	t.Helper()
	info, err := srv.Info("memory")
	if err != nil {
		t.Fatal(err)
	}
	used, err := strconv.ParseInt(info["used_memory"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Do("CONFIG", "SET", "maxmemory", strconv.FormatInt(used*11/10, 10)); err != nil {
		t.Fatal(err)
	}
}
