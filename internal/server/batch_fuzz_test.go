package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tiercache/tiercache"
)

// FuzzBatch posts arbitrary bodies to the batch endpoints of a server on
// the in-memory store, which is always up. Whatever the body, the answer
// is 200, 204, 400 or 413; a 200 lists one item per key asked; an error
// is JSON with a documented code; and a refused mset writes nothing.
//
//	go test -run '^$' -fuzz FuzzBatch -fuzztime 60s ./internal/server
func FuzzBatch(f *testing.F) {
	for _, s := range []struct {
		path uint8
		body string
	}{
		{0, `{"keys":["a","b"]}`},
		{0, `{"keys":["a","a"]}`},
		{0, `{"keys":[]}`},
		{0, ``},
		{1, `{"items":[{"key":"a","value":"YQ==","ttl":"30s","tags":["t"]}]}`},
		{1, `{"items":[{"key":"a","value":"YQ==","ttl":1.5,"content_type":"application/json"}]}`},
		{1, `{"items":[{"key":"a","value":"e30=","content_type":"application/json"},{"key":"b","value":"!"}]}`},
		{1, `{"items":[{"key":"a","value":"YQ==","ttl":1e400}]}`},
		{1, `{"items":[{"key":"a","value":"YQ==","tags":["", "x"]}]}`},
		{1, `{"items":[{"key":"a"}]}`},
		{2, `{"keys":["a"]}`},
		{2, `{"keys":"a"} trailing`},
	} {
		f.Add(s.path, []byte(s.body))
	}
	paths := []string{"/v1/mget", "/v1/mset", "/v1/mdelete"}
	c, err := tiercache.New(tiercache.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = c.Close() })
	s, err := New(Config{Cache: c, MaxBatchKeys: 8, MaxBatchBytes: 4096, MaxValueSize: 64, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, p uint8, body []byte) {
		codes := documentedCodes(t)
		path := paths[int(p)%len(paths)]
		before := c.Counters().L1Entries
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", path, strings.NewReader(string(body))))
		switch w.Code {
		case http.StatusOK:
			var req keysRequest
			var ans mgetAnswer
			if err := json.Unmarshal(body, &req); err != nil || json.Unmarshal(w.Body.Bytes(), &ans) != nil || len(ans.Items) != len(req.Keys) {
				t.Fatalf("200 to %s %q: %s", path, body, w.Body)
			}
		case http.StatusNoContent:
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || !codes[e.Error.Code] || e.Error.Message == "" {
				t.Fatalf("%d to %s %q: %s", w.Code, path, body, w.Body)
			}
			if path == "/v1/mset" && c.Counters().L1Entries != before {
				t.Fatalf("a refused mset (%s) changed L1 from %d to %d entries: %q", w.Body, before, c.Counters().L1Entries, body)
			}
		default:
			t.Fatalf("%d to %s %q: %s", w.Code, path, body, w.Body)
		}
	})
}
