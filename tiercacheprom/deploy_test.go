package tiercacheprom

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The files under deploy/ and docs/ that name metrics must name real
// ones, and docs/metrics.md must list them all.

var (
	alertsFile    = filepath.Join("..", "deploy", "prometheus", "alerts.yml")
	alertTests    = filepath.Join("..", "deploy", "prometheus", "alerts_test.yml")
	dashboardFile = filepath.Join("..", "deploy", "grafana", "tiercache.json")
	metricsDoc    = filepath.Join("..", "docs", "metrics.md")
)

var metricRef = regexp.MustCompile(`\btiercache_[a-z0-9_]+`)

// serverMetricPrefix names the metrics tiercache serve exports about its
// own HTTP requests, not the recorder: internal/server's
// TestDocs_HTTPMetrics checks those.
const serverMetricPrefix = "tiercache_http_"

// referenced returns the metric names a file mentions, histogram series
// folded into their metric.
func referenced(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range metricRef.FindAllString(string(b), -1) {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if strings.HasSuffix(m, "_seconds"+suffix) {
				m = strings.TrimSuffix(m, suffix)
			}
		}
		out = append(out, m)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func TestDeploy_MetricNames(t *testing.T) {
	t.Parallel()
	names := metricNames(t)
	for _, f := range []string{alertsFile, alertTests, dashboardFile, metricsDoc} {
		refs := referenced(t, f)
		if len(refs) == 0 {
			t.Errorf("%s names no metric", f)
		}
		for _, r := range refs {
			if !slices.Contains(names, r) && !strings.HasPrefix(r, serverMetricPrefix) {
				t.Errorf("%s names %s, which the recorder does not export", f, r)
			}
		}
	}
	documented := referenced(t, metricsDoc)
	for _, n := range names {
		if !slices.Contains(documented, n) {
			t.Errorf("docs/metrics.md does not list %s", n)
		}
	}
}

func TestDeploy_GrafanaJSON(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) < 8 {
		t.Fatalf("dashboard %q (uid %q) has %d panels", d.Title, d.UID, len(d.Panels))
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") {
				t.Errorf("panel %q: unbalanced expression %q", p.Title, tg.Expr)
			}
		}
	}
}

// TestDeploy_PromtoolRules checks the alerting rules with promtool and
// runs their unit tests (alerts_test.yml).
func TestDeploy_PromtoolRules(t *testing.T) {
	t.Parallel()
	promtool := requirePromtool(t)
	for _, args := range [][]string{
		{"check", "rules", alertsFile},
		{"test", "rules", alertTests},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
