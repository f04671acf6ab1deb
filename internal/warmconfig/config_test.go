package warmconfig

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache/warm"
)

// collect runs a generator and returns what it yields.
func collect(t *testing.T, g warm.Generator) ([]warm.Item, error) {
	t.Helper()
	var items []warm.Item
	err := g(t.Context(), func(it warm.Item) error {
		items = append(items, it)
		return nil
	})
	return items, err
}

func TestParse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "critical.jsonl"), []byte(`{"key":"config:app","value":{"theme":"dark"}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var gotAuth string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		fmt.Fprintln(w, `{"key":"api:1","value":[1,2],"ttl":"5m"}`)
	}))
	defer ts.Close()
	yml := `
lock_ttl: 15m
strategies:
  - name: critical-app-data
    priority: 1
    schedule: "@every 1h"
    ttl: 7200
    tags: [critical, app]
    file: {path: critical.jsonl}
  - name: api-responses
    priority: 4
    enabled: false
    warm_on_startup: false
    batch_size: 500
    delay_between_batches: 0
    ttl: 10m
    http:
      url: ` + ts.URL + `/export
      timeout: 5s
      max_bytes: 1048576
      headers: {Authorization: "Bearer ${WARM_TOKEN}"}
  - name: defaults
    file: {path: /abs/items.jsonl}
`
	cfg, err := Parse(filepath.Join(dir, "warming.yaml"), []byte(yml), Options{
		HTTPClient: ts.Client(),
		Getenv:     func(k string) string { return map[string]string{"WARM_TOKEN": "s3cret"}[k] },
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LockTTL != 15*time.Minute || len(cfg.Strategies) != 3 {
		t.Fatalf("config %+v", cfg)
	}
	crit, api, def := cfg.Strategies[0], cfg.Strategies[1], cfg.Strategies[2]
	if crit.Name != "critical-app-data" || crit.Priority != 1 || !crit.Enabled || !crit.WarmOnStartup || !crit.WarmOnDemand ||
		crit.Schedule != "@every 1h" || crit.TTL != 2*time.Hour || !slices.Equal(crit.Tags, []string{"critical", "app"}) {
		t.Errorf("critical: %+v", crit)
	}
	if api.Enabled || api.WarmOnStartup || !api.WarmOnDemand || api.BatchSize != 500 || api.DelayBetweenBatches >= 0 || api.TTL != 10*time.Minute {
		t.Errorf("api: %+v", api)
	}
	if def.Priority != 0 || def.BatchSize != 0 || def.DelayBetweenBatches != 0 || !def.Enabled {
		t.Errorf("defaults are left to warm: %+v", def)
	}
	items, err := collect(t, crit.Generator)
	if err != nil || len(items) != 1 || items[0].Key != "config:app" || string(items[0].Value.([]byte)) != `{"theme":"dark"}` {
		t.Fatalf("file source (relative to the config): %+v %v", items, err)
	}
	items, err = collect(t, api.Generator)
	if err != nil || len(items) != 1 || items[0].TTL != 5*time.Minute || gotAuth != "Bearer s3cret" {
		t.Fatalf("http source: %+v %v, Authorization %q", items, err, gotAuth)
	}
	if _, err := collect(t, def.Generator); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file fails the run: %v", err)
	}
	// The strategies are valid for a Runner as they are.
	if _, err := warm.NewRunner(warm.Options{Cache: newCache(t, "memory")}, cfg.Strategies...); err != nil {
		t.Fatal(err)
	}
}

func TestParse_Invalid(t *testing.T) {
	t.Parallel()
	const head = "strategies:\n  - name: a\n"
	const src = "    file: {path: a.jsonl}\n"
	for _, tc := range []struct {
		name, yaml string
		want       string // substring of the error
	}{
		{"empty file", "", "warming.yaml: the file is empty"},
		{"not a mapping", "- a\n", "warming.yaml:1: the top level must be a mapping"},
		{"yaml syntax", "strategies: [\n", "warming.yaml: yaml: "},
		{"unknown top-level field", "strategy: []\n", `warming.yaml:1: unknown field "strategy" (known: lock_ttl, strategies)`},
		{"no strategies", "lock_ttl: 1m\n", "strategies must be a non-empty list"},
		{"empty strategies", "strategies: []\n", "strategies must be a non-empty list"},
		{"bad lock_ttl", "lock_ttl: soon\n" + head + src, `warming.yaml:1: lock_ttl: "soon" is not a duration`},
		{"unknown strategy field", head + "    scheduel: '@hourly'\n" + src, `warming.yaml:3: strategy "a": unknown field "scheduel" (known: name, priority,`},
		{"bad cron", head + "    schedule: '61 * * * *'\n" + src, `warming.yaml:3: strategy "a": schedule "61 * * * *" is not a valid cron expression: end of range (61) above maximum (59)`},
		{"cron never fires", head + "    schedule: '0 0 30 2 *'\n" + src, `strategy "a": schedule "0 0 30 2 *" is not a valid cron expression: it never fires`},
		{"priority too high", head + "    priority: 11\n" + src, `warming.yaml:3: strategy "a": priority: 11 is out of range 1..10`},
		{"priority zero", head + "    priority: 0\n" + src, `strategy "a": priority: 0 is out of range 1..10`},
		{"priority not a number", head + "    priority: high\n" + src, `strategy "a": priority: "high" is not a whole number`},
		{"enabled not a bool", head + "    enabled: maybe\n" + src, `strategy "a": enabled: "maybe" is not true or false`},
		{"batch size zero", head + "    batch_size: 0\n" + src, `strategy "a": batch_size: 0 is not positive`},
		{"bad ttl", head + "    ttl: soon\n" + src, `strategy "a": ttl: "soon" is not a duration such as 30s or 2h, or seconds`},
		{"negative ttl", head + "    ttl: -5s\n" + src, `strategy "a": ttl: -5s is negative`},
		{"empty tag", head + "    tags: [x, '']\n" + src, `strategy "a": tags: a tag is empty`},
		{"no name", "strategies:\n  - file: {path: a.jsonl}\n", "warming.yaml:2: a strategy has no name"},
		{"duplicate name", head + src + "  - name: a\n" + src, `warming.yaml:4: strategy "a": name: already used by the strategy on line 2`},
		{"no source", head + "    ttl: 1m\n", `warming.yaml:2: strategy "a": no source: add file: {path: ...} or http: {url: ...}`},
		{"two sources", head + src + "    http: {url: 'https://x'}\n", `strategy "a": both file and http`},
		{"missing path", head + "    file: {}\n", `warming.yaml:3: strategy "a": file.path is required`},
		{"unknown file field", head + "    file: {path: x, glob: '*'}\n", `strategy "a": file: unknown field "glob" (known: path, max_line_bytes)`},
		{"missing url", head + "    http: {timeout: 1s}\n", `strategy "a": http.url is required`},
		{"url scheme", head + "    http: {url: 'ftp://user:pw@host/x'}\n", `strategy "a": http.url: "ftp://user:xxxxx@host/x" is not an http:// or https:// URL`},
		{"bad max_bytes", head + "    http: {url: 'https://h/x', max_bytes: -1}\n", `strategy "a": http.max_bytes: "-1" is not a positive number of bytes`},
		{"unknown http field", head + "    http: {url: 'https://h/x', method: POST}\n", `strategy "a": http: unknown field "method"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse("warming.yaml", []byte(tc.yaml), Options{})
			if err == nil || !strings.HasPrefix(err.Error(), "warmconfig: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Parallel()
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml"), Options{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "w.yaml")
	if err := os.WriteFile(path, []byte("strategies:\n  - name: a\n    file: {path: items.jsonl}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path, Options{})
	if err != nil || len(cfg.Strategies) != 1 {
		t.Fatalf("%+v %v", cfg, err)
	}
	_, err = collect(t, cfg.Strategies[0].Generator)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(filepath.Dir(path), "items.jsonl")) {
		t.Fatalf("the path is not relative to the config: %v", err)
	}
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	body := strings.Repeat(`{"key":"k","value":1}`+"\n", 100)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprint(w, body)
		case "/missing":
			http.NotFound(w, r)
		case "/slow":
			w.WriteHeader(http.StatusOK)
			fmt.Fprintln(w, `{"key":"first","value":1}`)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	defer ts.Close()
	gen := func(path string, mod func(*HTTPSource)) warm.Generator {
		src := HTTPSource{URL: ts.URL + path + "?token=s3cret", Client: ts.Client()}
		if mod != nil {
			mod(&src)
		}
		return HTTP(src)
	}
	items, err := collect(t, gen("/ok", nil))
	if err != nil || len(items) != 100 {
		t.Fatalf("%d items, %v", len(items), err)
	}
	_, err = collect(t, gen("/missing", nil))
	if err == nil || !strings.Contains(err.Error(), "404 Not Found") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("404: %v", err)
	}
	items, err = collect(t, gen("/ok", func(s *HTTPSource) { s.MaxBytes = int64(len(body) / 2) }))
	if !errors.Is(err, errTooLarge) || len(items) == 0 || len(items) >= 100 || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("too large: %d items, %v", len(items), err)
	}
	items, err = collect(t, gen("/slow", func(s *HTTPSource) { s.Timeout = 100 * time.Millisecond }))
	if !errors.Is(err, context.DeadlineExceeded) || len(items) != 1 {
		t.Fatalf("timeout: %d items, %v", len(items), err)
	}
	_, err = collect(t, HTTP(HTTPSource{URL: "http://127.0.0.1:1/x"}))
	if err == nil {
		t.Fatal("an unreachable server is not an error")
	}
}
