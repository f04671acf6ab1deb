package warmconfig

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/warm"
)

func TestReadJSONLines(t *testing.T) {
	t.Parallel()
	long := `{"key":"long","value":"` + strings.Repeat("x", 200) + `"}`
	input := strings.Join([]string{
		`{"key":"obj","value":{"a":[1,2]},"ttl":30,"tags":["t1","t2"]}`,
		``,
		`{"key":"str","value":"hi","ttl":"2m"}`,
		`not json`,
		`{"key":"typo","vaule":1}`,
		`{"value":1}`,
		`{"key":"novalue"}`,
		`{"key":"neg","value":1,"ttl":-1}`,
		`{"key":"badttl","value":1,"ttl":"soon"}`,
		long,
		`{"key":"two","value":1} {"key":"three","value":1}`,
		`   `,
		`{"key":"null","value":null,"ttl":1.5}`,
		`{"key":"last","value":42}`, // no newline at the end
	}, "\n")
	var items []warm.Item
	err := ReadJSONLines(strings.NewReader(input), 128, func(it warm.Item) error {
		items = append(items, it)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	type want struct {
		key, value string
		ttl        time.Duration
		tags       []string
		err        string
	}
	wants := []want{
		{key: "obj", value: `{"a":[1,2]}`, ttl: 30 * time.Second, tags: []string{"t1", "t2"}},
		{key: "str", value: `"hi"`, ttl: 2 * time.Minute},
		{err: "line 4: invalid character"},
		{err: `line 5: json: unknown field "vaule"`},
		{err: `line 6: no "key"`},
		{key: "novalue", err: `line 7: no "value"`},
		{key: "neg", err: `line 8: "ttl": -1s is negative`},
		{key: "badttl", err: `line 9: "ttl": "soon" is not a duration`},
		{err: "line 10: longer than 128 bytes"},
		{key: "two", err: "line 11: more than one JSON value"},
		{key: "null", value: "null", ttl: 1500 * time.Millisecond},
		{key: "last", value: "42"},
	}
	if len(items) != len(wants) {
		t.Fatalf("%d items, want %d: %+v", len(items), len(wants), items)
	}
	for i, w := range wants {
		it := items[i]
		if w.err != "" {
			if it.Err == nil || !strings.Contains(it.Err.Error(), w.err) || it.Key != w.key {
				t.Errorf("item %d: %+v, want key %q and error %q", i, it, w.key, w.err)
			}
			continue
		}
		v, _ := it.Value.([]byte)
		if it.Err != nil || it.Key != w.key || string(v) != w.value || it.TTL != w.ttl || !slices.Equal(it.Tags, w.tags) {
			t.Errorf("item %d: %+v (value %s), want %+v", i, it, v, w)
		}
	}
	// yield's error ends the read.
	stop := errors.New("stop")
	n := 0
	err = ReadJSONLines(strings.NewReader(input), 0, func(warm.Item) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("%v after %d items", err, n)
	}
}

// newCache returns a cache on "memory" or a fresh "standalone",
// "sentinel" or "cluster" Redis.
func newCache(t *testing.T, topo string) *tiercache.Cache {
	t.Helper()
	opts := tiercache.Options{Namespace: "warmconfig", Logger: slog.New(slog.DiscardHandler)}
	switch topo {
	case "memory":
	case "standalone":
		opts.Redis = tiercache.RedisOptions{Addrs: []string{redistest.NewStandalone(t).Addr}}
	case "sentinel":
		st := redistest.NewSentinel(t)
		opts.Redis = tiercache.RedisOptions{SentinelMaster: st.MasterName, SentinelAddrs: st.SentinelAddrs()}
	case "cluster":
		opts.Redis = tiercache.RedisOptions{Addrs: redistest.NewCluster(t).Addrs(), Cluster: true}
	default:
		t.Fatalf("unknown topology %q", topo)
	}
	c, err := tiercache.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestSources_WarmCache runs a configuration with a file source and an
// http source through a Runner and reads the cache.
func TestSources_WarmCache(t *testing.T) {
	for _, topo := range []string{"memory", "standalone", "sentinel", "cluster"} {
		t.Run(topo, func(t *testing.T) {
			dir := t.TempDir()
			var lines strings.Builder
			for i := range 250 {
				fmt.Fprintf(&lines, `{"key":"product:%d","value":{"id":%d,"name":"p%d"},"tags":["p%d"]}`+"\n", i, i, i, i%2)
			}
			lines.WriteString("oops\n")
			if err := os.WriteFile(filepath.Join(dir, "products.jsonl"), []byte(lines.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				fmt.Fprintln(w, `{"key":"api:response:home","value":{"ok":true},"ttl":"90s"}`)
			}))
			defer ts.Close()
			cfg, err := Parse(filepath.Join(dir, "w.yaml"), []byte(`
strategies:
  - name: products
    priority: 2
    ttl: 30m
    tags: [catalog]
    batch_size: 100
    delay_between_batches: 0
    file: {path: products.jsonl}
  - name: api
    priority: 1
    http: {url: "`+ts.URL+`"}
`), Options{HTTPClient: ts.Client()})
			if err != nil {
				t.Fatal(err)
			}
			c := newCache(t, topo)
			r, err := warm.NewRunner(warm.Options{Cache: c, Logger: slog.New(slog.DiscardHandler)}, cfg.Strategies...)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			results, err := r.Startup(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if results[0].Strategy != "api" || results[0].Written != 1 {
				t.Errorf("api: %+v", results[0])
			}
			if res := results[1]; res.Written != 250 || res.Failed != 1 || res.Batches != 3 || !strings.Contains(fmt.Sprint(res.KeyErr), "line 251") {
				t.Errorf("products: %+v", res)
			}
			ctx := t.Context()
			var raw tiercache.Raw
			res, err := c.Lookup(ctx, "product:7", &raw)
			if err != nil || string(raw.Data) != `{"id":7,"name":"p7"}` || res.ExpiresAt.Sub(res.CreatedAt) != 30*time.Minute {
				t.Fatalf("product:7: %s %+v %v", raw.Data, res, err)
			}
			res, err = c.Lookup(ctx, "api:response:home", &raw)
			if err != nil || res.ExpiresAt.Sub(res.CreatedAt) != 90*time.Second {
				t.Fatalf("api: %+v %v", res, err)
			}
			if err := c.InvalidateTags(ctx, "p1"); err != nil {
				t.Fatal(err)
			}
			if err := c.Get(ctx, "product:7", &raw); !errors.Is(err, tiercache.ErrNotFound) {
				t.Fatalf("product:7 survived its line's tag: %v", err)
			}
			if err := c.Get(ctx, "product:8", &raw); err != nil {
				t.Fatalf("product:8: %v", err)
			}
			if err := c.InvalidateTags(ctx, "catalog"); err != nil {
				t.Fatal(err)
			}
			if err := c.Get(ctx, "product:8", &raw); !errors.Is(err, tiercache.ErrNotFound) {
				t.Fatalf("product:8 survived the strategy's tag: %v", err)
			}
		})
	}
}
