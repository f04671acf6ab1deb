package tiercacheprom

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

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
	c, reg := newCache(t, tiercache.Options{Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}}})
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
		if _, ok := exported[name]; !ok {
			t.Errorf("docs/metrics.md documents %s, which the recorder does not export", name)
		}
	}
}
