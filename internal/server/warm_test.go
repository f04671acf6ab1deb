package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/warm"
)

func TestServer_WarmDisabled(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{Token: testToken})
	r := do(t, ts, "GET", "/v1/warm", "", "Authorization", "Bearer "+testToken)
	wantStatus(t, r, http.StatusOK)
	if r.body != `{"enabled":false,"strategies":[]}`+"\n" {
		t.Fatalf("GET: %s", r.body)
	}
	wantStatus(t, do(t, ts, "POST", "/v1/warm", "", "Authorization", "Bearer "+testToken), http.StatusServiceUnavailable)
}

func TestServer_Warm(t *testing.T) {
	t.Parallel()
	for _, topo := range []string{"memory", "standalone"} {
		t.Run(topo, func(t *testing.T) {
			t.Parallel()
			opts := tiercache.Options{Namespace: "warm"}
			if topo == "standalone" {
				srv := redistest.NewStandalone(t)
				opts.Redis = tiercache.RedisOptions{Addrs: []string{srv.Addr}}
			}
			c := newCache(t, opts)
			errDown := errors.New("catalog service down")
			r, err := warm.NewRunner(warm.Options{Cache: c, Logger: slog.New(slog.DiscardHandler)},
				warm.Strategy{Name: "products", Priority: 2, Enabled: true, WarmOnDemand: true, TTL: 10 * time.Minute, Tags: []string{"catalog"},
					Generator: warm.Items(warm.Item{Key: "product:1", Value: []byte(`{"id":1}`)}, warm.Item{Key: "product:2", Value: []byte(`{"id":2}`)})},
				warm.Strategy{Name: "settings", Priority: 1, Enabled: true, WarmOnDemand: true,
					Generator: warm.Items(warm.Item{Key: "config:app", Value: []byte(`{"theme":"dark"}`)})},
				warm.Strategy{Name: "broken", Priority: 3, Enabled: true, WarmOnDemand: true,
					Generator: func(context.Context, func(warm.Item) error) error { return errDown }},
				warm.Strategy{Name: "nightly", Priority: 4, Enabled: true, Schedule: "0 3 * * *", Generator: warm.Items()},
			)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = r.Close() })
			ts := newTestServer(t, Config{Cache: c, Token: testToken, Warmer: r})
			auth := []string{"Authorization", "Bearer " + testToken}

			wantStatus(t, do(t, ts, "POST", "/v1/warm", ""), http.StatusUnauthorized)
			resp := do(t, ts, "POST", "/v1/warm", "", auth...)
			wantStatus(t, resp, http.StatusAccepted)
			if resp.body != `{"strategies":["settings","products","broken"]}`+"\n" {
				t.Fatalf("POST with no body: %s", resp.body)
			}
			var list warmList
			deadline := time.Now().Add(30 * time.Second)
			for {
				resp = do(t, ts, "GET", "/v1/warm", "", auth...)
				wantStatus(t, resp, http.StatusOK)
				if err := json.Unmarshal([]byte(resp.body), &list); err != nil {
					t.Fatal(err)
				}
				done := 0
				for _, s := range list.Strategies {
					if s.Runs == 1 {
						done++
					}
				}
				if done == 3 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("runs did not finish: %s", resp.body)
				}
				time.Sleep(10 * time.Millisecond)
			}
			var names []string
			for _, s := range list.Strategies {
				names = append(names, s.Name)
			}
			if !list.Enabled || !slices.Equal(names, []string{"settings", "products", "broken", "nightly"}) {
				t.Fatalf("GET lists %v (enabled %v)", names, list.Enabled)
			}
			products := list.Strategies[1]
			if products.TTL != "10m0s" || !slices.Equal(products.Tags, []string{"catalog"}) || products.LastRun == nil ||
				products.LastRun.Trigger != "demand" || products.LastRun.Written != 2 || products.LastRun.Batches != 1 ||
				products.LastRun.Error != "" || products.LastRun.DurationSeconds < 0 || products.NextRun != nil {
				t.Errorf("products: %+v %+v", products, products.LastRun)
			}
			if b := list.Strategies[2].LastRun; b == nil || b.Error != fmt.Sprintf("warm: strategy %q: %v", "broken", errDown) {
				t.Errorf("broken: %+v", b)
			}
			if n := list.Strategies[3]; n.Schedule != "0 3 * * *" || n.LastRun != nil || n.WarmOnDemand {
				t.Errorf("nightly: %+v", n)
			}
			if g := do(t, ts, "GET", "/v1/cache/product:2", "", auth...); g.status != http.StatusOK || g.body != `{"id":2}` {
				t.Fatalf("product:2 after warming: %d %s", g.status, g.body)
			}

			resp = do(t, ts, "POST", "/v1/warm", `{"strategies":["products"]}`, auth...)
			wantStatus(t, resp, http.StatusAccepted)
			if resp.body != `{"strategies":["products"]}`+"\n" {
				t.Fatalf("POST products: %s", resp.body)
			}
			for _, tc := range []struct {
				body   string
				status int
			}{
				{`{"strategies":["nope"]}`, http.StatusNotFound},
				{`{"strategies":["nightly"]}`, http.StatusConflict},
				{`{"strategy":["products"]}`, http.StatusBadRequest},
				{`{"strategies":"products"}`, http.StatusBadRequest},
				{`{"strategies":[]}{}`, http.StatusBadRequest},
				{`not json`, http.StatusBadRequest},
			} {
				resp := do(t, ts, "POST", "/v1/warm", tc.body, auth...)
				wantStatus(t, resp, tc.status)
			}
			wantStatus(t, do(t, ts, "DELETE", "/v1/warm", "", auth...), http.StatusMethodNotAllowed)
		})
	}
}
