package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// artifactsDir receives the screenshots of the browser test. It is
// ignored by git (/artifacts/ in .gitignore).
var artifactsDir = filepath.Join("..", "..", "artifacts")

// requireChromium returns the path of a Chromium to drive. Without one the
// test skips, and fails under CI=true: make test installs Debian's
// chromium (scripts/install-tools.sh).
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := "chromium not found; install the Debian packages chromium and chromium-driver (make test does)"
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser is a headless Chromium tab showing the dashboard of a server.
type browser struct {
	t   *testing.T
	ctx context.Context
}

// openDashboard starts headless Chromium, opens the dashboard of ts with a
// half-second refresh and waits for its charts. Any uncaught exception in
// the page fails the test when it ends.
func openDashboard(t *testing.T, ts *httptest.Server) *browser {
	t.Helper()
	chromium := requireChromium(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromium),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 1100),
	)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)

	// Open the tab, then listen.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	var (
		mu         sync.Mutex
		exceptions []string
	)
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*runtime.EventExceptionThrown); ok {
			mu.Lock()
			exceptions = append(exceptions, (&chromedp.ExceptionError{ExceptionDetails: e.ExceptionDetails}).Error())
			mu.Unlock()
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range exceptions {
			t.Errorf("exception in the page: %s", e)
		}
	})
	if err := chromedp.Do(bctx,
		chromedp.Navigate(ts.URL+"/?refresh=0.5"),
		chromedp.WaitVisible(chromedp.CSS("#chart-hits .uplot")),
	); err != nil {
		t.Fatalf("load the dashboard: %v", err)
	}
	return &browser{t: t, ctx: bctx}
}

// text returns the text of the element sel selects.
func (b *browser) text(sel string) string {
	b.t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("read %s: %v", sel, err)
	}
	return s
}

// waitFor polls a JavaScript condition in the page.
func (b *browser) waitFor(what, js string) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(45*time.Second))); err != nil {
		b.t.Fatalf("%s: %v (status %q, requests %q)", what, err, b.text("#status"), b.text("#requests-total"))
	}
}

// login types the token into the page's form, once the page asks for it.
func (b *browser) login(token string) {
	b.t.Helper()
	b.waitFor("the token form", `!document.getElementById("login").hidden`)
	if err := chromedp.Do(b.ctx,
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#login button")),
	); err != nil {
		b.t.Fatalf("type the token: %v", err)
	}
}

// screenshot saves the page as artifactsDir/name.
func (b *browser) screenshot(name string) {
	b.t.Helper()
	img, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(artifactsDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	path := filepath.Join(artifactsDir, name)
	if err := os.WriteFile(path, img, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", path)
}

// TestDashboard_Browser loads the dashboard in headless Chromium against
// a cache on real Redis, behind a token: the page asks for the token and
// shows nothing before; its figures and charts move with traffic (hit
// ratio, operations per second, latency, L1 size, the topology table);
// warming runs are listed, one with failed keys shown failed, in red, with
// the count; a Redis short of memory shows as degraded, with its memory
// against maxmemory; a stopped Redis shows as unhealthy with the breaker
// open, and the checks that could not run as unknown, Redis memory as
// unknown rather than 0 B. Screenshots go to artifactsDir.
func TestDashboard_Browser(t *testing.T) {
	requireChromium(t)
	srv := redistest.NewStandalone(t)
	rec, gatherer, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	cache := newCache(t, tiercache.Options{
		Redis:    tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		Recorder: rec,
		Retries:  -1,
		Breaker:  tiercache.BreakerOptions{Threshold: 3, OpenTimeout: time.Hour},
	})
	ts := newMeasuredServer(t, Config{Cache: cache, Metrics: gatherer, Token: testToken})
	auth := []string{"Authorization", "Bearer " + testToken}
	b := openDashboard(t, ts)
	text, waitFor, screenshot := b.text, b.waitFor, b.screenshot

	// Without the token the page asks for it, and shows no figures; the
	// status badge has /readyz's verdict, which needs no token.
	waitFor("token asked", `!document.getElementById("login").hidden`)
	waitFor("token needed", `document.getElementById("updated").textContent === "the server needs its token"`)
	if got := text("#namespace"); got != "…" {
		t.Errorf("namespace %q shown without the token", got)
	}
	if got := text("#checks tbody"); got != "" {
		t.Errorf("health checks %q shown without the token", got)
	}
	waitFor("no warming claim without the token", `document.getElementById("warming-empty").hidden`)
	screenshot("dashboard-token.png")
	// A wrong token is refused and asked again; the right one shows all.
	b.login("wrong-token")
	waitFor("wrong token refused", `!document.getElementById("login").hidden &&
		document.getElementById("login-message").textContent === "The token was refused."`)
	b.login(testToken)
	waitFor("the token form hidden", `document.getElementById("login").hidden`)

	// The page loads, with its charts and a healthy status.
	waitFor("healthy", `document.getElementById("status").textContent === "healthy"`)
	waitFor("health checks", `document.querySelector("#checks tbody").textContent.indexOf("connectivity") >= 0`)
	waitFor("first figures", `document.getElementById("requests-total").textContent === "0"`)
	if got := text("#hit-ratio"); got != "–" {
		t.Errorf("hit ratio %q before any read", got)
	}
	if got := text("#topology-kind"); got != "standalone" {
		t.Errorf("topology %q", got)
	}
	waitFor("warming empty state", `!document.getElementById("warming-empty").hidden`)
	if got := text("#warming-empty"); !strings.Contains(got, "No warming runs") {
		t.Errorf("warming empty state %q", got)
	}

	// Traffic: the figures move.
	for i := range 20 {
		if r := do(t, ts, "PUT", fmt.Sprintf("/v1/cache/k%d", i), "value", auth...); r.status != http.StatusNoContent {
			t.Fatalf("PUT: %d %s", r.status, r.body)
		}
	}
	for i := range 400 {
		do(t, ts, "GET", fmt.Sprintf("/v1/cache/k%d", i%25), "", auth...)
	}
	waitFor("figures after traffic", `document.getElementById("requests-total").textContent === "400"`)
	// 20 of the 25 keys exist: 320 of the 400 reads hit.
	waitFor("hit ratio", `document.getElementById("hit-ratio").textContent === "80.0%"`)
	// The charts plotted the traffic: a hit ratio and a rate above zero.
	waitFor("hit ratio chart", `tiercacheChartData("chart-hits")[1].some(function (v) { return v > 0; })`)
	waitFor("operations chart", `tiercacheChartData("chart-ops")[1].some(function (v) { return v > 0; })`)
	waitFor("latency chart", `tiercacheChartData("chart-latency")[3].some(function (v) { return v > 0; })`)
	waitFor("L2 latency", `/^L2 [0-9.]+ (ns|µs|ms) \/ [0-9.]+ (ns|µs|ms)$/.test(document.getElementById("latency-l2").textContent)`)
	if got := text("#l1-entries"); !regexp.MustCompile(`^2[0-5] entries of 64\.0 MiB$`).MatchString(got) {
		t.Errorf("L1 entries %q after reading 20 keys (and 5 absent ones)", got)
	}
	if got := text("#l1-bytes"); got == "0 B" || got == "–" {
		t.Errorf("L1 size %q after traffic", got)
	}
	if got := text("#redis-memory-sub"); got != "no maxmemory set" {
		t.Errorf("Redis memory without maxmemory: %q", got)
	}
	if got := text("#breaker"); got != "closed" {
		t.Errorf("breaker %q", got)
	}
	if got := text("#topology tbody"); !strings.Contains(got, srv.Addr) || !strings.Contains(got, "master") {
		t.Errorf("topology table %q", got)
	}
	// The server's own requests: their rate by status, the latency of the
	// cache routes, and the routes table (the 80 reads of absent keys are
	// 404s).
	waitFor("HTTP requests chart", `tiercacheChartData("chart-http")[1].some(function (v) { return v > 10; }) &&
		tiercacheChartData("chart-http")[3].some(function (v) { return v > 0; })`)
	waitFor("HTTP latency chart", `tiercacheChartData("chart-http-latency")[2].some(function (v) { return v > 0; })`)
	waitFor("HTTP status split", `/^2xx [0-9.]+% · 4xx [0-9.]+% · 5xx 0\.0%$/.test(document.getElementById("http-codes").textContent)`)
	waitFor("HTTP rate", `/^[0-9.]+$/.test(document.getElementById("http-rate").textContent)`)
	if got := text("#http-conns"); !regexp.MustCompile(`^[1-9][0-9]* connections open, [1-9][0-9]* in flight$`).MatchString(got) {
		t.Errorf("HTTP connections %q", got)
	}
	httpRoute := func(route string) string {
		return `Array.prototype.filter.call(document.querySelectorAll("#http-routes tbody tr"), function (tr) {
			return tr.cells[0].textContent === "` + route + `"; })[0]`
	}
	waitFor("HTTP routes", httpRoute("GET /v1/cache/{key...}")+` && `+httpRoute("PUT /v1/cache/{key...}")+`.cells[1].textContent === "20"`)
	if got := text("#http-routes tbody"); !regexp.MustCompile(`GET /v1/cache/\{key\.\.\.\}\t400\t80\t0\t[0-9.]+ (ns|µs|ms)\t[0-9.]+ (ns|µs|ms)\n`).MatchString(got) {
		t.Errorf("HTTP routes table %q: want the GET route with 400 requests, 80 of them 4xx, none 5xx, and its percentiles", got)
	}
	waitFor("no HTTP metrics-off note", `document.getElementById("http-routes-empty").hidden`)
	// Redis's commandstats per node: the SETs and GETs of the traffic.
	commandRow := func(cmd string) string {
		return `Array.prototype.filter.call(document.querySelectorAll("#commands tbody tr"), function (tr) {
			return tr.cells[0].textContent === "` + srv.Addr + `" && tr.cells[1].textContent === "` + cmd + `"; })[0]`
	}
	waitFor("commandstats", commandRow("set")+` && parseInt(`+commandRow("set")+`.cells[2].textContent.replace(/,/g, ""), 10) >= 20 && `+
		commandRow("get"))
	if got := text("#breaker-detail"); got != "0 calls refused" {
		t.Errorf("breaker detail %q while closed", got)
	}
	if got := text("#coherence-lag"); got != "off" {
		t.Errorf("coherence lag %q without the canary", got)
	}
	waitFor("fleet off", `!document.getElementById("fleet-empty").hidden && document.getElementById("fleet").hidden`)

	// Warming runs show in the list of recent runs, newest first: a clean
	// one as ok, in green; one with failed keys as failed, in red, with
	// the count (tiercache warm exits 1 for it).
	cache.RecordWarm("nightly", 120, 0, 1500*time.Millisecond, nil)
	cache.RecordWarm("hourly", 118, 2, 900*time.Millisecond, nil)
	waitFor("warming runs", `document.getElementById("warming-empty").hidden &&
		document.querySelectorAll("#warming tbody tr").length === 2`)
	row := func(i int) string { return text(fmt.Sprintf("#warming tbody tr:nth-child(%d)", i)) }
	if got := row(2); !strings.Contains(got, "nightly") || !strings.Contains(got, "120") || !strings.Contains(got, "1.50 s") || !strings.Contains(got, "ok") {
		t.Errorf("clean warming row %q", got)
	}
	if got := row(1); !strings.Contains(got, "hourly") || !strings.Contains(got, "failed: 2 keys") || strings.Contains(got, "ok") {
		t.Errorf("failed warming row %q", got)
	}
	const red, green = "rgb(198, 40, 40)", "rgb(31, 136, 61)"
	resultColor := func(i int) string {
		return fmt.Sprintf(`getComputedStyle(document.querySelector("#warming tbody tr:nth-child(%d) td:last-child")).color`, i)
	}
	waitFor("failed run in red", resultColor(1)+` === "`+red+`"`)
	waitFor("clean run in green", resultColor(2)+` === "`+green+`"`)
	screenshot("dashboard-healthy.png")

	// Redis short of memory: maxmemory just above what it uses.
	squeezeMemory(t, srv)
	waitFor("degraded", `document.getElementById("status").textContent === "degraded"`)
	if got := text("#checks tbody"); !strings.Contains(got, "memory") || !strings.Contains(got, "warn") {
		t.Errorf("health checks table %q", got)
	}
	waitFor("memory against maxmemory", `/^of [0-9.]+ (KiB|MiB) maxmemory \([89][0-9]\.[0-9]%\)$/.test(document.getElementById("redis-memory-sub").textContent)`)
	screenshot("dashboard-degraded.png")

	// Redis stopped: unhealthy, the node down, and the breaker opens after
	// three failed reads.
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if r := do(t, ts, "GET", fmt.Sprintf("/v1/cache/absent%d", i), "", auth...); r.status != http.StatusServiceUnavailable {
			t.Fatalf("GET with Redis stopped: %d %s", r.status, r.body)
		}
	}
	waitFor("unhealthy", `document.getElementById("status").textContent === "unhealthy"`)
	// The three 503s show in the HTTP panel: the 5xx series and the route's count, in red.
	waitFor("HTTP 5xx chart", `tiercacheChartData("chart-http")[4].some(function (v) { return v > 0; })`)
	waitFor("HTTP 5xx of the GET route", httpRoute("GET /v1/cache/{key...}")+`.cells[3].textContent === "3" && `+
		httpRoute("GET /v1/cache/{key...}")+`.cells[3].className === "fail"`)
	waitFor("breaker open", `document.getElementById("breaker").textContent === "open"`)
	// The breaker refuses the next read at once; the page says for how
	// long it has been open and how many calls it refused.
	if r := do(t, ts, "GET", "/v1/cache/refused", "", auth...); r.status != http.StatusServiceUnavailable {
		t.Fatalf("GET with the breaker open: %d %s", r.status, r.body)
	}
	waitFor("breaker open time and refusals", `/^open for [0-9.]+ (ms|s), [1-9][0-9]* calls? refused$/.test(document.getElementById("breaker-detail").textContent)`)
	waitFor("node down", `document.querySelector("#topology tbody").textContent.indexOf("down") >= 0`)
	// The checks that ask Redis could not run: unknown, never pass; and
	// Redis's memory is unknown, not 0 B.
	checkStatus := func(name string) string {
		return `Array.prototype.filter.call(document.querySelectorAll("#checks tbody tr"), function (tr) {
			return tr.cells[0].textContent === "` + name + `"; })[0].cells[1]`
	}
	for _, name := range []string{"memory", "replication"} {
		waitFor(name+" check unknown", checkStatus(name)+`.textContent === "unknown" && `+checkStatus(name)+`.className === "unknown"`)
	}
	waitFor("Redis memory unknown", `document.getElementById("redis-memory").textContent === "unknown"`)
	// The health poll is slower than the stats poll: wait for one taken
	// after the breaker opened.
	waitFor("breaker check fails", checkStatus("circuit breaker")+`.textContent === "fail"`)
	if got := text("#checks tbody"); strings.Contains(got, "0 B") || strings.Contains(got, "pass") {
		t.Errorf("health checks with Redis stopped: %q", got)
	}
	if got := text("#redis-memory-sub"); got != "no Redis master answered" {
		t.Errorf("Redis memory with Redis stopped: %q", got)
	}
	screenshot("dashboard-unhealthy.png")
}

// TestDashboard_BrowserTopologies: on Sentinel and on Cluster, the
// dashboard's topology panel names the deployment and lists its nodes.
func TestDashboard_BrowserTopologies(t *testing.T) {
	requireChromium(t)
	t.Run("sentinel", func(t *testing.T) {
		st := redistest.NewSentinel(t)
		ts := newObservedServer(t, tiercache.Options{
			Redis: tiercache.RedisOptions{SentinelMaster: st.MasterName, SentinelAddrs: st.SentinelAddrs()},
		}, Config{})
		b := openDashboard(t, ts)
		b.waitFor("topology kind", `document.getElementById("topology-kind").textContent === "sentinel"`)
		b.waitFor("sentinel summary", `document.getElementById("topology-summary").textContent.indexOf("3/3 sentinels agree") >= 0`)
		got := b.text("#topology-summary")
		if !strings.Contains(got, "master "+st.Master.Addr) || !strings.Contains(got, "2 replicas") {
			t.Errorf("topology summary %q", got)
		}
		// One entry per sentinel and per replica.
		for _, n := range append(slices.Clone(st.Sentinels), st.Replicas...) {
			if !strings.Contains(got, n.Addr+" ok") {
				t.Errorf("topology summary %q does not show %s as ok", got, n.Addr)
			}
		}
		if got := b.text("#topology tbody"); !strings.Contains(got, st.Master.Addr) || !strings.Contains(got, "master") {
			t.Errorf("topology table %q", got)
		}
		b.screenshot("dashboard-sentinel.png")
	})
	t.Run("cluster", func(t *testing.T) {
		cl := redistest.NewCluster(t)
		ts := newObservedServer(t, tiercache.Options{
			Redis: tiercache.RedisOptions{Addrs: cl.Addrs(), Cluster: true},
		}, Config{})
		b := openDashboard(t, ts)
		b.waitFor("topology kind", `document.getElementById("topology-kind").textContent === "cluster"`)
		b.waitFor("cluster summary", `document.getElementById("topology-summary").textContent.indexOf("Cluster ok: 3 masters, 3 replicas") >= 0`)
		// Every master is listed, with its memory.
		b.waitFor("cluster nodes", `Array.prototype.filter.call(document.querySelectorAll("#topology tbody tr"),
			function (tr) { return tr.cells[1].textContent === "master" && tr.cells[2].textContent === "up"; }).length === 3`)
		b.screenshot("dashboard-cluster.png")
	})
}

// TestDashboard_BrowserHTTPMetricsOff: a server without metrics
// (monitoring off) has no http section in /v1/stats; the dashboard's HTTP
// panel says so instead of showing zeros.
func TestDashboard_BrowserHTTPMetricsOff(t *testing.T) {
	requireChromium(t)
	b := openDashboard(t, newTestServer(t, Config{}))
	b.waitFor("HTTP metrics off", `document.getElementById("http-rate").textContent === "off" &&
		!document.getElementById("http-routes-empty").hidden`)
	if got := b.text("#http-codes"); got != "HTTP metrics are off" {
		t.Errorf("HTTP status split without metrics: %q", got)
	}
	if got := b.text("#topology-kind"); got != "memory" {
		t.Errorf("topology %q", got)
	}
}

// TestDashboard_BrowserFleet: three instances of one namespace on one
// Redis, with the fleet registry and the coherence canary on. The page of
// the first shows the coherence lag and its chart, and the fleet table
// lists all three, flags the one on another version, then shows the one
// whose link to Redis is cut as silent, in red.
func TestDashboard_BrowserFleet(t *testing.T) {
	requireChromium(t)
	srv := redistest.NewStandalone(t)
	px := redistest.NewProxy(t, srv.Addr)
	opts := func(id, version, addr string) tiercache.Options {
		return tiercache.Options{
			Namespace: "dash", Redis: tiercache.RedisOptions{Addrs: []string{addr}},
			Fleet:  tiercache.FleetOptions{Enabled: true, InstanceID: id, Version: version, Address: id + ":8080", Heartbeat: 100 * time.Millisecond},
			Canary: tiercache.CanaryOptions{Interval: 100 * time.Millisecond},
		}
	}
	a := newCache(t, opts("alpha", "v1", srv.Addr))
	newCache(t, opts("bravo", "v1", srv.Addr))
	newCache(t, opts("charlie", "v2", px.Addr))
	ts := newTestServer(t, Config{Cache: a})
	b := openDashboard(t, ts)
	fleetRow := func(id string) string {
		return `Array.prototype.filter.call(document.querySelectorAll("#fleet tbody tr"), function (tr) {
			return tr.cells[0].textContent.indexOf("` + id + `") === 0; })[0]`
	}
	b.waitFor("three live instances", `document.getElementById("fleet-summary").textContent.indexOf("3 live, 0 silent, 0 stopped, 1 disagreeing") === 0`)
	b.waitFor("alpha is this one", fleetRow("alpha")+`.cells[0].textContent === "alpha (this one)" && `+fleetRow("alpha")+`.cells[3].textContent === "live"`)
	b.waitFor("charlie's version flagged", fleetRow("charlie")+`.cells[2].className === "disagree" && `+
		fleetRow("charlie")+`.cells[2].title === 'version "v2", most have "v1"'`)
	b.waitFor("coherence lag", `/^[0-9.]+ (µs|ms) \/ [0-9.]+ (µs|ms)$/.test(document.getElementById("coherence-lag").textContent)`)
	b.waitFor("coherence markers", `/^[1-9][0-9,]* markers seen, [0-9,]+ missed, from 2 instances$/.test(document.getElementById("coherence-markers").textContent)`)
	b.waitFor("coherence chart", `tiercacheChartData("chart-coherence")[2].some(function (v) { return v > 0; })`)
	b.waitFor("lag in the fleet table", `/^[0-9.]+ (µs|ms)$/.test(`+fleetRow("bravo")+`.cells[10].textContent)`)
	b.screenshot("dashboard-fleet.png")

	// charlie's link to Redis is cut: its heartbeats stop.
	if err := px.Blackhole(); err != nil {
		t.Fatal(err)
	}
	b.waitFor("charlie silent", fleetRow("charlie")+`.cells[3].textContent === "silent" && `+fleetRow("charlie")+`.cells[3].className === "fail"`)
	b.waitFor("summary with a silent one", `document.getElementById("fleet-summary").textContent.indexOf("2 live, 1 silent") === 0`)
	b.screenshot("dashboard-fleet-silent.png")
}
