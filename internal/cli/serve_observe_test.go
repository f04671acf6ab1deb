package cli

import (
	"net/http"
	"strings"
	"testing"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestRun_ServeObservability checks that serve wires the metrics registry
// and the observability endpoints, and that none of them shows the Redis
// password or the token.
func TestRun_ServeObservability(t *testing.T) {
	clearEnv(t)
	srv := redistest.NewStandalone(t, "--requirepass", password)
	t.Setenv("REDIS_URL", "redis://:"+password+"@"+srv.Addr+"/0")
	s := startServe(t, "serve", "--addr", "127.0.0.1:0", "--token", testToken, "--log-level", "debug")
	base := "http://" + s.addr

	if code, body := request(t, "PUT", base+"/v1/cache/k", "v", testToken); code != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", code, body)
	}
	request(t, "GET", base+"/v1/cache/k", "", testToken)
	var bodies []string
	for _, tc := range []struct{ path, want string }{
		{"/metrics", `tiercache_requests_total{op="get",result="hit_l1"} 1`}, // the writer reads its own write from L1
		{"/metrics", `tiercache_redis_up{node="` + srv.Addr + `"} 1`},
		{"/metrics", "go_goroutines"},
		// The server's own metrics, in the same registry: serve counts the
		// connections, the one of this scrape at least.
		{"/metrics", `tiercache_http_requests_total{code="204",method="PUT",route="PUT /v1/cache/{key...}"} 1`},
		{"/metrics", "tiercache_http_connections_open 1"},
		{"/v1/stats", `"connections_accepted":`},
		{"/readyz", `"status":"healthy"`},
		{"/v1/stats", `"topology":"standalone"`},
		{"/", "<title>tiercache</title>"},
	} {
		code, body := request(t, "GET", base+tc.path, "", testToken)
		if code != http.StatusOK || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s: %d, want 200 with %q; body:\n%.2000s", tc.path, code, tc.want, body)
		}
		bodies = append(bodies, body)
	}
	if code := s.stop(t); code != 0 {
		t.Errorf("exit code %d:\n%s", code, s.stderr)
	}
	for _, out := range append(bodies, s.stderr.String()) {
		if strings.Contains(out, password) || strings.Contains(out, testToken) {
			t.Errorf("a secret shows in:\n%.2000s", out)
		}
	}
}
