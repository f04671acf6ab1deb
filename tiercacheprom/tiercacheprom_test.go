package tiercacheprom

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// newCache builds a cache recording into a fresh registry.
func newCache(t *testing.T, opts tiercache.Options) (*tiercache.Cache, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	rec, err := New(reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Recorder = rec
	opts.Logger = slog.New(slog.DiscardHandler)
	c, err := tiercache.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, reg
}

// value returns the value of the metric name with exactly labels (name,
// value pairs) in reg; for a histogram, its sample count. ok is false when
// there is no such metric.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func hasLabels(m *dto.Metric, labels []string) bool {
	if len(m.GetLabel()) != len(labels)/2 {
		return false
	}
	for i := 0; i+1 < len(labels); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
			return l.GetName() == labels[i] && l.GetValue() == labels[i+1]
		}) {
			return false
		}
	}
	return true
}

func wantValue(t *testing.T, reg prometheus.Gatherer, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(t, reg, name, labels...)
	if !ok {
		t.Errorf("%s%v: no such metric", name, labels)
	} else if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func TestRecorder_Memory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, reg := newCache(t, tiercache.Options{})
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	var s string
	for range 3 {
		if err := c.Get(ctx, "k", &s); err != nil {
			t.Fatal(err)
		}
	}
	_ = c.Get(ctx, "missing", &s)
	_, _ = tiercache.Fetch(ctx, c, "f", func(context.Context, string) (string, error) { return "x", nil })
	_, _ = tiercache.Fetch(ctx, c, "g", func(context.Context, string) (string, error) { return "", errors.New("down") })
	if err := c.InvalidateTags(ctx, "t1", "t2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	c.RecordWarm("startup", 40, 2, 1500*time.Millisecond, nil)
	c.RecordWarm("startup", 10, 0, time.Second, errors.New("generator failed"))

	wantValue(t, reg, 3, "tiercache_requests_total", "op", "get", "result", "hit_l1")
	wantValue(t, reg, 1, "tiercache_requests_total", "op", "get", "result", "miss")
	wantValue(t, reg, 1, "tiercache_requests_total", "op", "fetch", "result", "miss")
	wantValue(t, reg, 1, "tiercache_requests_total", "op", "fetch", "result", "error")
	wantValue(t, reg, 0, "tiercache_requests_total", "op", "fetch_many", "result", "stale")
	wantValue(t, reg, 1, "tiercache_loader_calls_total", "result", "ok")
	wantValue(t, reg, 1, "tiercache_loader_calls_total", "result", "error")
	wantValue(t, reg, 2, "tiercache_loader_duration_seconds")
	wantValue(t, reg, 2, "tiercache_invalidations_sent_total", "kind", "tag")
	wantValue(t, reg, 1, "tiercache_invalidations_sent_total", "kind", "delete")
	wantValue(t, reg, 1, "tiercache_breaker_state", "state", "closed")
	wantValue(t, reg, 0, "tiercache_breaker_state", "state", "open")
	wantValue(t, reg, 0, "tiercache_recovery_queue_length")
	wantValue(t, reg, tiercache.DefaultL1MaxBytes, "tiercache_l1_max_bytes")
	wantValue(t, reg, 0, "tiercache_l1_evictions_total") // 3 small entries in 64 MiB
	wantValue(t, reg, 1, "tiercache_warm_runs_total", "strategy", "startup", "result", "ok")
	wantValue(t, reg, 1, "tiercache_warm_runs_total", "strategy", "startup", "result", "error")
	wantValue(t, reg, 50, "tiercache_warm_keys_total", "strategy", "startup", "result", "written")
	wantValue(t, reg, 2, "tiercache_warm_keys_total", "strategy", "startup", "result", "failed")
	wantValue(t, reg, 2, "tiercache_warm_duration_seconds", "strategy", "startup")
	if n, _ := value(t, reg, "tiercache_l2_operation_duration_seconds", "op", "get"); n < 2 {
		t.Errorf("L2 get durations observed: %v", n)
	}
	if n, _ := value(t, reg, "tiercache_l2_operations_total", "op", "set", "result", "ok"); n < 1 {
		t.Errorf("L2 set/ok count: %v", n)
	}
	if _, ok := value(t, reg, "tiercache_redis_up", "node", "x"); ok {
		t.Error("redis metrics on the in-memory store")
	}
	if n, _ := value(t, reg, "tiercache_l1_entries"); n < 1 {
		t.Errorf("tiercache_l1_entries = %v", n)
	}

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestRecorder_Redis(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t, "--maxmemory", "64mb")
	c, reg := newCache(t, tiercache.Options{
		Redis:   tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		Retries: -1,
		Breaker: tiercache.BreakerOptions{Threshold: 1, OpenTimeout: time.Hour},
	})
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	wantValue(t, reg, 1, "tiercache_redis_up", "node", srv.Addr)
	wantValue(t, reg, 1, "tiercache_redis_node_info", "node", srv.Addr, "role", "master")
	wantValue(t, reg, 64<<20, "tiercache_redis_memory_max_bytes", "node", srv.Addr)
	if used, _ := value(t, reg, "tiercache_redis_memory_used_bytes", "node", srv.Addr); used <= 0 {
		t.Errorf("used memory %v", used)
	}
	wantValue(t, reg, 0, "tiercache_redis_master_changes_total")

	// Redis stopped: the node is down, the breaker opens and later
	// attempts are rejected.
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	var s string
	for range 3 {
		_ = c.Get(ctx, "other", &s)
	}
	wantValue(t, reg, 0, "tiercache_redis_up", "node", srv.Addr)
	wantValue(t, reg, 1, "tiercache_breaker_state", "state", "open")
	wantValue(t, reg, 1, "tiercache_breaker_transitions_total", "to", "open")
	wantValue(t, reg, 1, "tiercache_l2_operations_total", "op", "get", "result", "unavailable")
	wantValue(t, reg, 2, "tiercache_l2_operations_total", "op", "get", "result", "rejected")
	wantValue(t, reg, 3, "tiercache_requests_total", "op", "get", "result", "error")
}

func TestRecorder_ConstLabels(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	if _, err := New(reg, Options{ConstLabels: prometheus.Labels{"cache": "users"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, Options{ConstLabels: prometheus.Labels{"cache": "orders"}}); err != nil {
		t.Fatalf("a second recorder with other labels: %v", err)
	}
	if _, err := New(reg, Options{ConstLabels: prometheus.Labels{"cache": "users"}}); err == nil {
		t.Fatal("a second recorder with the same labels registered")
	}
	if _, err := New(nil, Options{RedisTimeout: -1}); err == nil {
		t.Fatal("negative RedisTimeout accepted")
	}
}

// TestRecorder_PromtoolCheckMetrics runs promtool check metrics on the
// exposition of a busy cache.
func TestRecorder_PromtoolCheckMetrics(t *testing.T) {
	t.Parallel()
	promtool := requirePromtool(t)
	ctx := context.Background()
	c, reg := newCache(t, tiercache.Options{})
	_, _ = tiercache.Fetch(ctx, c, "f", func(context.Context, string) (int, error) { return 1, nil })
	c.RecordWarm("nightly", 1, 0, time.Second, nil)
	var b strings.Builder
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(b.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// requirePromtool returns promtool's path. Without it the test skips,
// and fails under CI=true: make test installs it (Debian's prometheus).
func requirePromtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err == nil {
		return p
	}
	msg := "promtool not found; install the Debian package prometheus (make test does)"
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// metricNames returns the names of every metric a Recorder exports.
func metricNames(t *testing.T) []string {
	t.Helper()
	r := Must(nil, Options{})
	ch := make(chan *prometheus.Desc, 128)
	r.Describe(ch)
	close(ch)
	re := regexp.MustCompile(`fqName: "([^"]+)"`)
	var names []string
	for d := range ch {
		m := re.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}
