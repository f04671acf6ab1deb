package server

import (
	"net/http"
	"testing"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

func TestServer_InvalidateAndClear(t *testing.T) {
	for _, topo := range []string{"memory", "standalone"} {
		t.Run(topo, func(t *testing.T) {
			opts := tiercache.Options{Namespace: "inv"}
			if topo == "standalone" {
				srv := redistest.NewStandalone(t)
				opts.Redis = tiercache.RedisOptions{Addrs: []string{srv.Addr}}
			}
			ts := newTestServer(t, Config{Cache: newCache(t, opts), Token: "tok"})
			auth := []string{"Authorization", "Bearer tok"}
			for _, k := range []string{"a", "ab", "b", "none"} {
				tags := map[string]string{"a": "?tags=a", "ab": "?tags=a,b", "b": "?tags=b", "none": ""}[k]
				wantStatus(t, do(t, ts, "PUT", "/v1/cache/"+k+tags, "v", auth...), http.StatusNoContent)
				wantStatus(t, do(t, ts, "GET", "/v1/cache/"+k, "", auth...), http.StatusOK)
			}
			wantStatus(t, do(t, ts, "POST", "/v1/invalidate", `{"tags":["a"]}`), http.StatusUnauthorized)
			wantStatus(t, do(t, ts, "POST", "/v1/invalidate", `{"tags":["a"]}`, auth...), http.StatusNoContent)
			for k, want := range map[string]int{"a": 404, "ab": 404, "b": 200, "none": 200} {
				wantStatus(t, do(t, ts, "GET", "/v1/cache/"+k, "", auth...), want)
			}
			for _, body := range []string{``, `{}`, `{"tags":[]}`, `{"tags":[""]}`, `{"tags":"a"}`, `{"tag":["a"]}`, `{"tags":["a"]}{}`, `not json`} {
				wantStatus(t, do(t, ts, "POST", "/v1/invalidate", body, auth...), http.StatusBadRequest)
			}
			wantStatus(t, do(t, ts, "POST", "/v1/clear", "", auth...), http.StatusNoContent)
			for _, k := range []string{"b", "none"} {
				wantStatus(t, do(t, ts, "GET", "/v1/cache/"+k, "", auth...), http.StatusNotFound)
			}
			wantStatus(t, do(t, ts, "POST", "/v1/clear", ""), http.StatusUnauthorized)
			wantStatus(t, do(t, ts, "GET", "/v1/clear", "", auth...), http.StatusMethodNotAllowed)
		})
	}
}
