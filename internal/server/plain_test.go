package server

import (
	"net/http"
	"testing"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/redistest"
)

// TestServer_NotTiercacheValues: a key holding bytes tiercache did not
// write answers 422 not_tiercache_value on GET and as an mget item, not
// 404; with ReadPlainValues it answers the bytes.
func TestServer_NotTiercacheValues(t *testing.T) {
	t.Parallel()
	srv := redistest.NewStandalone(t)
	if _, err := srv.Do("SET", "plainns:plain", "hello"); err != nil {
		t.Fatal(err)
	}
	c := newCache(t, tiercache.Options{Namespace: "plainns", Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}}})
	ts := newTestServer(t, Config{Cache: c})
	r := do(t, ts, "GET", "/v1/cache/plain", "")
	wantStatus(t, r, http.StatusUnprocessableEntity)
	if e := decodeError(t, r); e.Error.Code != codeNotTiercacheValue {
		t.Fatalf("code %q, want %q", e.Error.Code, codeNotTiercacheValue)
	}
	if x := r.header.Get("X-Cache"); x == "miss" {
		t.Errorf("X-Cache: miss on a key that holds a value")
	}
	a := mget(t, ts, []string{"plain", "absent"})
	if it := a.Items[0]; it.Status != "error" || it.Error == nil || it.Error.Code != codeNotTiercacheValue {
		t.Fatalf("mget item %+v %+v, want an error item not_tiercache_value", it, it.Error)
	}
	if a.Items[1].Status != "miss" {
		t.Fatalf("absent: %+v", a.Items[1])
	}

	plain := newCache(t, tiercache.Options{Namespace: "plainns", Redis: tiercache.RedisOptions{Addrs: []string{srv.Addr}}, ReadPlainValues: true})
	ts2 := newTestServer(t, Config{Cache: plain})
	r = do(t, ts2, "GET", "/v1/cache/plain", "")
	wantStatus(t, r, http.StatusOK)
	if r.body != "hello" || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("with ReadPlainValues: %q %q", r.body, r.header.Get("Content-Type"))
	}
}
