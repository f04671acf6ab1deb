package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// writeWarmFiles writes a configuration and its JSON Lines into a
// temporary directory and returns the configuration's path. products.jsonl
// has n good lines and, when bad, one malformed line.
func writeWarmFiles(t *testing.T, yaml string, n int, bad bool) string {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"key":"product:%d","value":{"id":%d}}`+"\n", i, i)
	}
	if bad {
		b.WriteString("{oops\n")
	}
	files := map[string]string{
		"warming.yaml":   yaml,
		"products.jsonl": b.String(),
		"settings.jsonl": `{"key":"config:app","value":{"theme":"dark"},"ttl":"2h"}` + "\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "warming.yaml")
}

const warmYAML = `
warming:
  strategies:
    - name: settings
      priority: 1
      file: {path: settings.jsonl}
    - name: products
      priority: 2
      ttl: 30m
      batch_size: 50
      delay_between_batches: 0
      file: {path: products.jsonl}
    - name: nightly
      priority: 3
      schedule: "0 3 * * *"
      warm_on_demand: false
      warm_on_startup: false
      file: {path: products.jsonl}
`

func clearWarmEnv(t *testing.T) {
	clearEnv(t)
	t.Setenv("TIERCACHE_CONFIG", "")
	t.Setenv("CACHE_WARMING_ENABLED", "")
}

// TestRun_Warm warms a Redis from the command line, then reads what it
// wrote through a cache of its own.
func TestRun_Warm(t *testing.T) {
	clearWarmEnv(t)
	srv := redistest.NewStandalone(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	t.Setenv("CACHE_NAMESPACE", "cliwarm")
	path := writeWarmFiles(t, warmYAML, 120, true)

	var stdout, stderr bytes.Buffer
	code := Run(t.Context(), []string{"warm", "--config", path}, &stdout, &stderr)
	if code != 1 {
		t.Fatalf("exit code %d, want 1 for a malformed line\nstdout: %s\nstderr: %s", code, &stdout, &stderr)
	}
	for _, want := range []string{"warm: [1/2] settings: 1 written in ", "warm: [2/2] products: 120 written, 1 failed in ", "line 121: "} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, &stderr)
		}
	}
	if strings.Contains(stderr.String(), "\r") {
		t.Errorf("a progress bar on a non-terminal:\n%q", &stderr)
	}
	out := stdout.String()
	for _, want := range []string{"strategy  written  failed  batches  duration", "settings        1       0        1", "products      120       1        3", "   total      121       1", `warm: strategy "products": last failed key: line 121:`} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "nightly") {
		t.Errorf("a strategy not on demand ran:\n%s", out)
	}

	c, err := tiercache.New(tiercache.Options{Namespace: "cliwarm", Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var raw tiercache.Raw
	res, err := c.Lookup(t.Context(), "product:119", &raw)
	if err != nil || string(raw.Data) != `{"id":119}` || res.ExpiresAt.Sub(res.CreatedAt) != 30*time.Minute {
		t.Fatalf("product:119: %s %+v %v", raw.Data, res, err)
	}

	// One named strategy, through $TIERCACHE_CONFIG: a clean run exits 0.
	t.Setenv("TIERCACHE_CONFIG", path)
	stdout.Reset()
	stderr.Reset()
	if code := Run(t.Context(), []string{"warm", "--strategy", "settings"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d\nstdout: %s\nstderr: %s", code, &stdout, &stderr)
	}
	if !strings.Contains(stdout.String(), "settings") || strings.Contains(stdout.String(), "products") {
		t.Fatalf("summary:\n%s", &stdout)
	}
}

func TestRun_WarmProgressBar(t *testing.T) {
	clearWarmEnv(t)
	path := writeWarmFiles(t, warmYAML, 500, false)
	var stdout, stderr bytes.Buffer
	if err := warmCommand(t.Context(), streams{out: &stdout, err: &stderr}, &warmCmd{Config: path}, true); err != nil {
		t.Fatalf("error %v\nstdout: %s\nstderr: %s", err, &stdout, &stderr)
	}
	bar := stderr.String()
	for _, want := range []string{"\r[" + strings.Repeat("#", 12) + strings.Repeat(".", 12) + "] 1/2 products: 50 keys", "\r[" + strings.Repeat("#", 24) + "] 2/2 products: 500 keys"} {
		if !strings.Contains(bar, want) {
			t.Errorf("progress lacks %q:\n%q", want, bar)
		}
	}
	if !strings.HasSuffix(bar, "\n") || strings.Contains(bar, "warm: [") {
		t.Errorf("progress on a terminal:\n%q", bar)
	}
	if !strings.Contains(stdout.String(), "   total      501") {
		t.Errorf("summary:\n%s", &stdout)
	}
}

func TestRun_WarmErrors(t *testing.T) {
	clearWarmEnv(t)
	good := writeWarmFiles(t, warmYAML, 1, false)
	old := writeWarmFiles(t, "strategies:\n  - name: x\n    file: {path: products.jsonl}\n", 1, false)
	bad := writeWarmFiles(t, "warming:\n  strategies:\n  - name: x\n    priority: 11\n    file: {path: products.jsonl}\n", 1, false)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no config", []string{"warm"}, 2, "tiercache warm: --config is required"},
		{"missing file", []string{"warm", "--config", filepath.Join(t.TempDir(), "none.yaml")}, 1, "no such file or directory"},
		{"bad config", []string{"warm", "--config", bad}, 1, `warming.yaml:4: strategy "x": priority: 11 is out of range 1..10`},
		{"unknown strategy", []string{"warm", "--config", good, "--strategy", "settings,nope"}, 1, `unknown strategy "nope" (the configuration has: settings, products, nightly)`},
		{"not on demand", []string{"warm", "--config", good, "--strategy", "nightly"}, 1, "its WarmOnDemand is false"},
		{"positional argument", []string{"warm", "--config", good, "extra"}, 2, `unexpected argument extra`},
		{"old warming file", []string{"warm", "--config", old}, 1, `"strategies" at the top level is the warming file of earlier versions; indent the file's content under a "warming:" key`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := Run(t.Context(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit code %d (want %d), stderr lacks %q:\n%s", code, tc.code, tc.want, &stderr)
			}
		})
	}
}

// warmList is the part of GET /v1/warm these tests read.
type warmList struct {
	Enabled    bool `json:"enabled"`
	Strategies []struct {
		Name    string `json:"name"`
		Runs    int64  `json:"runs"`
		LastRun *struct {
			Trigger string `json:"trigger"`
			Written int64  `json:"written"`
		} `json:"last_run"`
		NextRun *time.Time `json:"next_run"`
	} `json:"strategies"`
}

func getWarmList(t *testing.T, base string) warmList {
	t.Helper()
	return getWarmListAs(t, base, testToken)
}

// getWarmListAs is getWarmList with the token token.
func getWarmListAs(t *testing.T, base, token string) warmList {
	t.Helper()
	code, body := request(t, "GET", base+"/v1/warm", "", token)
	if code != http.StatusOK {
		t.Fatalf("GET /v1/warm: %d %s", code, body)
	}
	var l warmList
	if err := json.Unmarshal([]byte(body), &l); err != nil {
		t.Fatalf("GET /v1/warm: %v in %s", err, body)
	}
	return l
}

// TestRun_ServeWarming serves with --config: start-up warming runs, the
// scheduled strategy has a next run, and POST /v1/warm starts runs.
func TestRun_ServeWarming(t *testing.T) {
	clearWarmEnv(t)
	path := writeWarmFiles(t, strings.Replace(warmYAML, "priority: 2\n", "priority: 2\n      warm_on_startup: false\n", 1), 10, false)
	s := startServe(t, "serve", "--addr", "127.0.0.1:0", "--token", testToken, "--config", path)
	base := "http://" + s.addr
	deadline := time.Now().Add(runTimeout)
	for {
		l := getWarmList(t, base)
		if !l.Enabled || len(l.Strategies) != 3 {
			t.Fatalf("GET /v1/warm: %+v", l)
		}
		if st := l.Strategies[0]; st.Name == "settings" && st.LastRun != nil {
			if st.LastRun.Trigger != "startup" || st.LastRun.Written != 1 {
				t.Fatalf("settings: %+v", st.LastRun)
			}
			if l.Strategies[1].LastRun != nil || l.Strategies[2].NextRun == nil {
				t.Fatalf("products ran at start-up, or nightly is not scheduled: %+v", l.Strategies)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("start-up warming did not run: %+v", l)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := request(t, "POST", base+"/v1/warm", `{"strategies":["products"]}`, testToken); code != http.StatusAccepted || body != `{"strategies":["products"]}`+"\n" {
		t.Fatalf("POST /v1/warm: %d %s", code, body)
	}
	for {
		if l := getWarmList(t, base); l.Strategies[1].Runs == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("POST /v1/warm did not run products")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := request(t, "GET", base+"/v1/cache/product:9", "", testToken); code != http.StatusOK || body != `{"id":9}` {
		t.Fatalf("product:9: %d %s", code, body)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, s.stderr)
	}
	if !strings.Contains(s.stderr.String(), `msg=warming config=`) {
		t.Errorf("no warming line in the log:\n%s", s.stderr)
	}
}

func TestRun_ServeWarmingDisabled(t *testing.T) {
	clearWarmEnv(t)
	path := writeWarmFiles(t, warmYAML, 1, false)
	t.Setenv("TIERCACHE_CONFIG", path)
	t.Setenv("CACHE_WARMING_ENABLED", "false")
	s := startServe(t, "serve", "--addr", "127.0.0.1:0")
	if l := getWarmList(t, "http://"+s.addr); l.Enabled || len(l.Strategies) != 0 {
		t.Fatalf("GET /v1/warm with warming off: %+v", l)
	}
	if code, _ := request(t, "POST", "http://"+s.addr+"/v1/warm", "", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("POST /v1/warm with warming off: %d", code)
	}
}

func TestRun_ServeWarmingErrors(t *testing.T) {
	bad := writeWarmFiles(t, "warming:\n  strategies:\n  - name: x\n    schedule: '61 * * * *'\n    file: {path: products.jsonl}\n", 1, false)
	for _, tc := range []struct {
		name    string
		enabled string
		want    string
	}{
		{"bad config", "", `strategy "x": schedule "61 * * * *" is not a valid cron expression`},
		{"bad config with warming off", "false", `strategy "x": schedule "61 * * * *"`},
		{"bad CACHE_WARMING_ENABLED", "sometimes", `CACHE_WARMING_ENABLED: warming.enabled: "sometimes" is not a boolean`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearWarmEnv(t)
			t.Setenv("CACHE_WARMING_ENABLED", tc.enabled)
			var stdout, stderr tiercachetest.Buffer
			code := Run(t.Context(), []string{"serve", "--addr", "127.0.0.1:0", "--config", bad}, &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), "tiercache serve: ") || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit code %d, stderr lacks %q:\n%s", code, tc.want, stderr.String())
			}
		})
	}
}
