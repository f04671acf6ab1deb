package server

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/tiercache/tiercache"
)

// FuzzHandler sends arbitrary requests (method, path and query, headers,
// body) through net/http's own request parser to the API handler, with
// authentication on. Whatever the input, the answer is never a 5xx (the
// store is in memory and always up), and every error answer is JSON with
// an error code, a message and the request id. Requests that net/http cannot parse never reach the
// handler: the server answers them 400 itself.
//
//	go test -run '^$' -fuzz FuzzHandler -fuzztime 60s ./internal/server
func FuzzHandler(f *testing.F) {
	const token = "fuzz-T0ken"
	auth := "Authorization: Bearer " + token + "\r\n"
	for _, s := range []struct {
		method, target, headers, body string
	}{
		{"GET", "/v1/cache/user:1", "", ""},
		{"GET", "/v1/cache/a%2Fb", "", ""},
		{"HEAD", "/v1/cache/k", "", ""},
		{"PUT", "/v1/cache/user:1?ttl=30s&tags=a,b", auth, "hello"},
		{"PUT", "/v1/cache/k?ttl=-1", auth, "x"},
		{"PUT", "/v1/cache/k?ttl=1e400&tags=", auth, "x"},
		{"PUT", "/v1/cache/k?ttl=NaN", auth, "x"},
		{"PUT", "/v1/cache/k?bogus=1", auth, ""},
		{"PUT", "/v1/cache/a//b", auth, "x"},
		{"PUT", "/v1/cache/%00", auth, "x"},
		{"PUT", "/v1/cache/" + strings.Repeat("k", 2000), auth, "x"},
		{"PUT", "/v1/cache/k", "Authorization: Bearer wrong\r\n", "x"},
		{"PUT", "/v1/cache/k", "Authorization: bearer " + token + "\r\nContent-Type: text/plain\r\n", "x"},
		{"DELETE", "/v1/cache/k", auth, ""},
		{"DELETE", "/v1/cache/", auth, ""},
		{"POST", "/v1/invalidate", auth, `{"tags":["a","b"]}`},
		{"POST", "/v1/invalidate", auth, `{"tags":[]}`},
		{"POST", "/v1/invalidate", auth, `{"tags":["a"]}{}`},
		{"POST", "/v1/invalidate", auth, `{"tags":[1]}`},
		{"POST", "/v1/invalidate", auth, `{"tags":[""],"x":1}`},
		{"POST", "/v1/invalidate", auth, "\xff\xfe"},
		{"POST", "/v1/clear", auth, ""},
		{"POST", "/v1/clear", "", ""},
		{"GET", "/healthz", "", ""},
		{"OPTIONS", "/v1/cache/k", "", ""},
		{"PATCH", "/v1/invalidate", auth, "{}"},
		{"GET", "/nope/../v1/cache/k", "", ""},
		{"GET", "*", "", ""},
	} {
		f.Add(s.method, s.target, s.headers, []byte(s.body))
	}
	c, err := tiercache.New(tiercache.Options{Logger: slog.New(slog.DiscardHandler), MaxValueSize: 1 << 16})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	srv, err := New(Config{Cache: c, Token: token, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler()

	f.Fuzz(func(t *testing.T, method, target, headers string, body []byte) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: tiercache\r\n" + headers +
			"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + string(body)
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http answers 400 before any handler runs
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		if res.StatusCode >= 500 {
			t.Fatalf("%s %q: %d %s", method, target, res.StatusCode, rec.Body)
		}
		if res.StatusCode < 400 {
			return
		}
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s %q: %d with Content-Type %q, want application/json", method, target, res.StatusCode, ct)
		}
		var e errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error.Code == "" || e.Error.Message == "" ||
			e.RequestID == "" || e.RequestID != res.Header.Get("X-Request-Id") {
			t.Fatalf("%s %q: %d with body %q, want {\"error\": {\"code\": ..., \"message\": ...}, \"request_id\": ...}: %v",
				method, target, res.StatusCode, rec.Body, err)
		}
	})
}
