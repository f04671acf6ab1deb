package server

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
)

// TestListener sends requests that net/http cannot parse over a raw
// connection: through Listener they get the API's JSON error form; a
// valid request on the same listener is untouched, keep-alive included.
func TestListener(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Cache: newCache(t, tiercache.Options{}), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(Listener(ln)) }()
	t.Cleanup(func() { _ = hs.Close() })

	send := func(raw string) []*http.Response {
		t.Helper()
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(conn, raw); err != nil {
			t.Fatal(err)
		}
		var out []*http.Response
		br := bufio.NewReader(conn)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return out
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body = io.NopCloser(strings.NewReader(string(b)))
			out = append(out, resp)
		}
	}
	for _, target := range []string{"/v1/cache/%zz", "/v1/cache/a%2", "/v1/cache/%"} {
		rs := send("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n")
		if len(rs) != 1 {
			t.Fatalf("GET %s: %d answers", target, len(rs))
		}
		r := rs[0]
		body, _ := io.ReadAll(r.Body)
		var e errorBody
		if r.StatusCode != http.StatusBadRequest || r.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(body, &e) != nil || e.Error.Code != codeBadRequest || e.RequestID == "" ||
			e.RequestID != r.Header.Get("X-Request-Id") {
			t.Errorf("GET %s: %d %q %s", target, r.StatusCode, r.Header.Get("Content-Type"), body)
		}
	}
	// Two valid requests on one connection: both answered as usual.
	rs := send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/cache/none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if len(rs) != 2 || rs[0].StatusCode != http.StatusOK || rs[1].StatusCode != http.StatusNotFound {
		t.Fatalf("valid requests: %d answers", len(rs))
	}
}
