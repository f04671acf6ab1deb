package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// TestSecrets_NeverShown runs a password-protected Redis behind a
// token-protected server, with debug logging, through success and
// failure, and looks for the password and the token in everything that
// leaves the process: logs, errors, Health, Stats, the report's JSON,
// every endpoint's answer (/v1/stats, /readyz, /metrics), the dashboard
// and its assets. The password comes in the URL (requirepass) or as an
// ACL user's password.
func TestSecrets_NeverShown(t *testing.T) {
	t.Parallel()
	const password = "Rp4ss-9f3kQ-secret"
	for _, tc := range []struct {
		name  string
		args  []string // of redis-server
		redis func(addr, password string) tiercache.RedisOptions
	}{
		{"url", []string{"--requirepass", password}, func(addr, pw string) tiercache.RedisOptions {
			return tiercache.RedisOptions{URL: "redis://:" + pw + "@" + addr + "/0"}
		}},
		{"acl user", []string{"--requirepass", password, "--user", "app", "on", ">" + password, "~*", "&*", "+@all"},
			func(addr, pw string) tiercache.RedisOptions {
				return tiercache.RedisOptions{Addrs: []string{addr}, Username: "app", Password: pw}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testSecretsNeverShown(t, password, tc.args, tc.redis)
		})
	}
}

func testSecretsNeverShown(t *testing.T, password string, args []string, redisOpts func(addr, password string) tiercache.RedisOptions) {
	token := testToken
	ctx := context.Background()
	srv := redistest.NewStandalone(t, args...)

	logs := &tiercachetest.Buffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rec, gatherer, err := NewMetrics()
	if err != nil {
		t.Fatal(err)
	}
	c := newCache(t, tiercache.Options{
		Redis:    redisOpts(srv.Addr, password),
		Logger:   logger,
		Recorder: rec,
		Retries:  -1,
		Breaker:  tiercache.BreakerOptions{Threshold: 2},
	})
	ts := newTestServer(t, Config{Cache: c, Token: token, Logger: logger, Metrics: gatherer})

	var seen []string // everything shown to a client or written out
	show := func(what string, v any) {
		switch v := v.(type) {
		case string:
			seen = append(seen, what+": "+v)
		case error:
			if v != nil {
				seen = append(seen, what+": "+v.Error())
			}
		default:
			b, err := json.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			seen = append(seen, what+": "+string(b))
		}
	}
	auth := []string{"Authorization", "Bearer " + token}
	get := func(path string) {
		// With the token (the whole answers) and without.
		for _, h := range [][]string{auth, nil} {
			r := do(t, ts, "GET", path, "", h...)
			show("GET "+path, r.body)
			for k, vs := range r.header {
				show("header "+k, strings.Join(vs, ","))
			}
		}
	}
	round := func(phase string) {
		show(phase+" PUT", do(t, ts, "PUT", "/v1/cache/user:1?ttl=1m&tags=users", "hello", auth...).body)
		show(phase+" PUT bad token", do(t, ts, "PUT", "/v1/cache/user:1", "x", "Authorization", "Bearer "+token+"x").body)
		show(phase+" DELETE", do(t, ts, "DELETE", "/v1/cache/user:2", "", auth...).body)
		show(phase+" invalidate", do(t, ts, "POST", "/v1/invalidate", `{"tags":["users"]}`, auth...).body)
		for _, p := range []string{"/v1/cache/user:1", "/v1/cache/none", "/readyz", "/healthz", "/v1/stats", "/metrics",
			"/", "/assets/app.js", "/assets/style.css"} {
			get(p)
		}
		show(phase+" Health", c.Health(ctx))
		rep, err := c.Stats(ctx)
		show(phase+" Report error", err)
		show(phase+" Report", rep)
		show(phase+" Stats", c.Counters())
		var s string
		show(phase+" Get error", c.Get(ctx, "user:1", &s))
		show(phase+" Set error", c.Set(ctx, "user:3", "v"))
	}

	round("up")
	// Redis down: errors, a queued write, an open breaker, a lost link.
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	round("down")
	if h := c.Health(ctx); h.Status != tiercache.Unhealthy {
		t.Fatalf("the down phase did not see Redis down: %s", h.Status)
	}
	// A wrong password, and a server that is not there.
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	for _, ro := range []tiercache.RedisOptions{
		redisOpts(srv.Addr, password+"x"),
		redisOpts("127.0.0.1:1", password),
	} {
		ro.DialTimeout = time.Second
		_, err := tiercache.New(tiercache.Options{Redis: ro, Logger: logger})
		if err == nil {
			t.Fatalf("New with %s succeeded", ro)
		}
		show("New error", err)
		show("RedisOptions", ro.String())
	}
	show("logs", logs.String())

	secrets := []string{password, url.QueryEscape(password), url.PathEscape(password), token}
	for _, s := range seen {
		for _, secret := range secrets {
			if strings.Contains(s, secret) {
				t.Errorf("a secret shows in %.300s", s)
			}
		}
	}
	// The scan saw real material: request logs, and errors naming Redis.
	if all := strings.Join(seen, "\n"); !strings.Contains(all, `"msg":"http request"`) || !strings.Contains(all, srv.Addr) {
		t.Error("the scan saw no request log or no error naming the Redis address")
	}
}
