package tiercacheprom

import (
	"context"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// docRow is one metric of a table of docs/metrics.md.
type docRow struct {
	typ    string
	labels []string
}

// docTable reads the metric tables of docs/metrics.md: rows of the form
// | `name` | type | `label`, `label` | meaning |.
func docTable(t *testing.T) map[string]docRow {
	t.Helper()
	b, err := os.ReadFile(metricsDoc)
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `(tiercache_[a-z0-9_]+)` \\| ([a-z]+) \\|([^|]*)\\|")
	label := regexp.MustCompile("`([a-z_]+)`")
	out := map[string]docRow{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		if _, dup := out[m[1]]; dup {
			t.Errorf("docs/metrics.md lists %s twice", m[1])
		}
		r := docRow{typ: m[2], labels: []string{}}
		for _, l := range label.FindAllStringSubmatch(m[3], -1) {
			r.labels = append(r.labels, l[1])
		}
		slices.Sort(r.labels)
		out[m[1]] = r
	}
	return out
}

// TestDocs_MetricsTable compares the tables of docs/metrics.md with what a
// Recorder exports on a cache on real Redis, after traffic and a warming
// run, so that every metric family is present: the same names, with the
// same type and the same labels.
func TestDocs_MetricsTable(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	// The canary on, so that its series exist.
	c, reg := newCache(t, tiercache.Options{Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}},
		Fleet: tiercache.FleetOptions{Enabled: true}, Canary: tiercache.CanaryOptions{Interval: time.Second}})
	ctx := context.Background()
	if _, err := tiercache.Fetch(ctx, c, "k", func(context.Context, string) (int, error) { return 1, nil }); err != nil {
		t.Fatal(err)
	}
	c.RecordWarm("nightly", 1, 0, 0, nil)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	exported := map[string]docRow{}
	for _, mf := range mfs {
		r := docRow{typ: strings.ToLower(mf.GetType().String()), labels: []string{}}
		if len(mf.GetMetric()) > 0 {
			for _, lp := range mf.GetMetric()[0].GetLabel() {
				r.labels = append(r.labels, lp.GetName())
			}
		}
		slices.Sort(r.labels)
		exported[mf.GetName()] = r
	}
	// Every family the recorder describes was gathered.
	for _, n := range metricNames(t) {
		if _, ok := exported[n]; !ok {
			t.Errorf("%s was not gathered: the test does not exercise it", n)
		}
	}
	if _, ok := exported["tiercache_requests_total"]; !ok || exported["tiercache_requests_total"].typ != strings.ToLower(dto.MetricType_COUNTER.String()) {
		t.Fatalf("tiercache_requests_total: %+v", exported["tiercache_requests_total"])
	}

	documented := docTable(t)
	for name, want := range exported {
		got, ok := documented[name]
		switch {
		case !ok:
			t.Errorf("docs/metrics.md has no table row for %s", name)
		case got.typ != want.typ:
			t.Errorf("docs/metrics.md: %s is a %s, documented as a %s", name, want.typ, got.typ)
		case !slices.Equal(got.labels, want.labels):
			t.Errorf("docs/metrics.md: %s has labels %v, documented as %v", name, want.labels, got.labels)
		}
	}
	for name := range documented {
		if _, ok := exported[name]; !ok && !strings.HasPrefix(name, serverMetricPrefix) {
			t.Errorf("docs/metrics.md documents %s, which the recorder does not export", name)
		}
	}
}

// TestRecorder_RedisEvents: on real Redis, a corrupt stored value and a
// write by another client show in the exported counters, and no label
// value ever carries a key.
func TestRecorder_RedisEvents(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	c, reg := newCache(t, tiercache.Options{Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}}})
	ctx := context.Background()
	const key = "user:k3y-that-must-not-be-a-label"

	// A value no codec can read: a counted miss.
	if _, err := srv.Do("SET", c.Namespace()+":"+key, "not an envelope"); err != nil {
		t.Fatal(err)
	}
	var s string
	if err := c.Get(ctx, key, &s); !errors.Is(err, tiercache.ErrNotFound) {
		t.Fatalf("Get of a corrupt value: %v", err)
	}
	wantValue(t, reg, 1, "tiercache_corrupt_values_total")
	wantValue(t, reg, 1, "tiercache_requests_total", "op", "get", "result", "miss")

	// Another client overwrites a key this cache holds in L1: Redis tells
	// the cache, which drops its copy.
	if _, err := tiercache.Fetch(ctx, c, key, func(context.Context, string) (string, error) { return "v", nil }); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, key, &s); err != nil { // fills L1 from L2, tracked
		t.Fatal(err)
	}
	before, _ := value(t, reg, "tiercache_invalidations_received_total")
	if _, err := srv.Do("DEL", c.Namespace()+":"+key); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, _ := value(t, reg, "tiercache_invalidations_received_total")
		if n > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tiercache_invalidations_received_total stayed at %v after another client's DEL", n)
		}
		time.Sleep(10 * time.Millisecond) // pacing the poll
	}

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), "k3y") {
					t.Errorf("%s has label %s=%q", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}
}
