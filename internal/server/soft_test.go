package server

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/tiercache/tiercache/internal/redistest"
)

// TestServer_SoftInvalidation: ?soft=true on DELETE /v1/cache/{key},
// POST /v1/mdelete, /v1/invalidate and /v1/clear makes entries stale: a
// GET misses them while Redis answers, and answers them stale when Redis
// is down. Entries invalidated hard are never answered again, Redis down
// or not. A bad soft value, or soft with If-Match, is a 400.
func TestServer_SoftInvalidation(t *testing.T) {
	t.Parallel()
	srv, _, ts := redisDownServer(t, "soft")
	keys := map[string]string{
		"tag-soft": "?tags=s", "tag-hard": "?tags=h",
		"del-soft": "", "del-hard": "", "mdel-soft": "", "kept": "",
	}
	for k, q := range keys {
		wantStatus(t, do(t, ts, "PUT", "/v1/cache/"+k+q, "v-"+k), http.StatusNoContent)
		wantStatus(t, do(t, ts, "GET", "/v1/cache/"+k, ""), http.StatusOK)
	}
	for _, path := range []string{"/v1/invalidate?soft=yes", "/v1/invalidate?soft=true&soft=false", "/v1/clear?soft=2", "/v1/mdelete?soft="} {
		r := do(t, ts, "POST", path, `{"tags":["s"]}`)
		wantStatus(t, r, http.StatusBadRequest)
		if e := decodeError(t, r); e.Error.Code != codeInvalidParameter {
			t.Errorf("%s: code %s", path, e.Error.Code)
		}
	}
	wantStatus(t, do(t, ts, "DELETE", "/v1/cache/del-soft?soft=true", "", "If-Match", "*"), http.StatusBadRequest)

	wantStatus(t, do(t, ts, "POST", "/v1/invalidate?soft=true", `{"tags":["s"]}`), http.StatusNoContent)
	wantStatus(t, do(t, ts, "POST", "/v1/invalidate?soft=false", `{"tags":["h"]}`), http.StatusNoContent)
	wantStatus(t, do(t, ts, "DELETE", "/v1/cache/del-soft?soft=1", ""), http.StatusNoContent)
	wantStatus(t, do(t, ts, "DELETE", "/v1/cache/del-hard", ""), http.StatusNoContent)
	wantStatus(t, do(t, ts, "POST", "/v1/mdelete?soft=true", `{"keys":["mdel-soft"]}`), http.StatusNoContent)
	for k := range keys {
		want := http.StatusNotFound
		if k == "kept" {
			want = http.StatusOK
		}
		wantStatus(t, do(t, ts, "GET", "/v1/cache/"+k, ""), want)
	}

	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"tag-soft", "mdel-soft", "del-soft"} {
		redistest.Eventually(t, 20*time.Second, k+" answered stale", func() error {
			r := do(t, ts, "GET", "/v1/cache/"+k, "")
			if r.status != http.StatusOK || r.header.Get("X-Cache") != "stale" || r.body != "v-"+k {
				return fmt.Errorf("%d %s %q", r.status, r.header.Get("X-Cache"), r.body)
			}
			return nil
		})
	}
	for _, k := range []string{"tag-hard", "del-hard"} {
		if r := do(t, ts, "GET", "/v1/cache/"+k, ""); r.status == http.StatusOK {
			t.Errorf("%s, invalidated, answered %d %s %q with Redis down", k, r.status, r.header.Get("X-Cache"), r.body)
		}
	}
}
