package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tiercache/tiercache"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// TestServer_ErrorForm: every error, whatever produced it, has the JSON
// form with a documented code (wantStatus checks the form).
func TestServer_ErrorForm(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{Token: testToken, MaxValueSize: 4})
	auth := []string{"Authorization", "Bearer " + testToken}
	for _, tc := range []struct {
		name, method, path, body string
		header                   []string
		status                   int
		code                     string
	}{
		{"empty key", "GET", "/v1/cache/", "", auth, http.StatusBadRequest, codeInvalidKey},
		{"empty segment", "GET", "/v1/cache/a//b", "", auth, http.StatusBadRequest, codeInvalidKey},
		{"bad ttl", "PUT", "/v1/cache/k?ttl=soon", "v", auth, http.StatusBadRequest, codeInvalidParameter},
		{"tag too long", "PUT", "/v1/cache/k?tags=" + strings.Repeat("t", 1025), "v", auth, http.StatusBadRequest, codeInvalidTag},
		{"bad invalidate body", "POST", "/v1/invalidate", "{", auth, http.StatusBadRequest, codeInvalidBody},
		{"empty tag in invalidate", "POST", "/v1/invalidate", `{"tags":[""]}`, auth, http.StatusBadRequest, codeInvalidTag},
		{"no token", "GET", "/v1/cache/k", "", nil, http.StatusUnauthorized, codeUnauthorized},
		{"absent key", "GET", "/v1/cache/absent", "", auth, http.StatusNotFound, codeNotFound},
		{"unknown path", "GET", "/v2/things", "", auth, http.StatusNotFound, codeNoSuchEndpoint},
		{"unknown asset", "GET", "/assets/none.js", "", nil, http.StatusNotFound, codeNoSuchEndpoint},
		{"no metrics", "GET", "/metrics", "", auth, http.StatusNotFound, codeMetricsDisabled},
		{"method", "PATCH", "/v1/cache/k", "", auth, http.StatusMethodNotAllowed, codeMethodNotAllowed},
		{"too large", "PUT", "/v1/cache/k", "12345", auth, http.StatusRequestEntityTooLarge, codeValueTooLarge},
		{"warming disabled", "POST", "/v1/warm", "", auth, http.StatusServiceUnavailable, codeWarmingDisabled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := do(t, ts, tc.method, tc.path, tc.body, tc.header...)
			wantStatus(t, r, tc.status)
			if e := decodeError(t, r); e.Error.Code != tc.code {
				t.Errorf("code %q, want %q (%s)", e.Error.Code, tc.code, r.body)
			}
		})
	}
}

// TestServer_RequestID: a sane incoming X-Request-Id is kept, anything
// else is replaced by a fresh one; the id is in the request's log line.
func TestServer_RequestID(t *testing.T) {
	t.Parallel()
	var buf tiercachetest.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ts := newTestServer(t, Config{Logger: logger})
	r := do(t, ts, "GET", "/v1/cache/k", "", "X-Request-Id", "client-id_1.2:3")
	wantStatus(t, r, http.StatusNotFound)
	if got := r.header.Get("X-Request-Id"); got != "client-id_1.2:3" {
		t.Errorf("X-Request-Id %q, want the client's", got)
	}
	if !strings.Contains(buf.String(), "request_id=client-id_1.2:3") {
		t.Errorf("the log lacks the request id:\n%s", buf.String())
	}
	seen := map[string]bool{}
	for _, bad := range []string{"", "has space", "new\\nline", strings.Repeat("x", 129), "<script>", "é"} {
		r := do(t, ts, "GET", "/healthz", "", "X-Request-Id", bad)
		id := r.header.Get("X-Request-Id")
		if id == bad || !saneRequestID(id) || seen[id] {
			t.Errorf("incoming %q: answered %q, want a fresh generated id", bad, id)
		}
		seen[id] = true
	}
}

// TestServer_OpenReads: with a token and OpenReads, reads need no token
// and changes still do.
func TestServer_OpenReads(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{Token: testToken, OpenReads: true})
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/k", "v"), http.StatusUnauthorized)
	wantStatus(t, do(t, ts, "PUT", "/v1/cache/k", "v", "Authorization", "Bearer "+testToken), http.StatusNoContent)
	for _, p := range []string{"/v1/cache/k", "/v1/stats", "/v1/warm"} {
		wantStatus(t, do(t, ts, "GET", p, ""), http.StatusOK)
	}
	wantStatus(t, do(t, ts, "HEAD", "/v1/cache/k", ""), http.StatusOK)
	wantStatus(t, do(t, ts, "POST", "/v1/clear", ""), http.StatusUnauthorized)
	if r := do(t, ts, "GET", "/readyz", ""); !strings.Contains(r.body, `"checks"`) {
		t.Errorf("/readyz with open reads: %s, want the whole report", r.body)
	}
}

// TestServer_ReadyzVerdict: with a token, /readyz answers every client,
// with only the verdict unless the token comes with the request.
func TestServer_ReadyzVerdict(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Config{Token: testToken})
	r := do(t, ts, "GET", "/readyz", "")
	wantStatus(t, r, http.StatusOK)
	if r.body != `{"status":"healthy"}`+"\n" {
		t.Errorf("/readyz without the token: %s", r.body)
	}
	r = do(t, ts, "GET", "/readyz", "", "Authorization", "Bearer "+testToken)
	var h tiercache.Health
	if err := json.Unmarshal([]byte(r.body), &h); err != nil || h.Checks.Connectivity.Status != tiercache.CheckPass {
		t.Errorf("/readyz with the token: %s (%v)", r.body, err)
	}
}

// TestClassify maps each kind of cache error to its answer; the message
// never repeats the error.
func TestClassify(t *testing.T) {
	t.Parallel()
	s := &Server{cache: newCache(t, tiercache.Options{MaxValueSize: 64}), timeout: time.Second}
	l2 := errors.New(`redisstore: get "ns:k": dial tcp 127.0.0.1:6379: connect: connection refused`)
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{&tiercache.KeyError{Op: "get", Key: "k", Err: tiercache.ErrNotFound}, http.StatusNotFound, codeNotFound},
		{&tiercache.KeyError{Op: "get", Key: "", Err: fmt.Errorf("%w: empty", tiercache.ErrInvalidKey)}, http.StatusBadRequest, codeInvalidKey},
		{fmt.Errorf("invalidate tags: %w", fmt.Errorf("%w: a tag must be 1 to 1024 bytes, got 0", tiercache.ErrInvalidTag)), http.StatusBadRequest, codeInvalidTag},
		{&tiercache.KeyError{Op: "set", Key: "k", Err: tiercache.ErrValueTooLarge}, http.StatusRequestEntityTooLarge, codeValueTooLarge},
		{fmt.Errorf("%w: %w", tiercache.ErrQueueFull, l2), http.StatusServiceUnavailable, codeQueueFull},
		{fmt.Errorf("%w: disk full: %w", tiercache.ErrJournal, l2), http.StatusServiceUnavailable, codeJournalFailed},
		{&tiercache.KeyError{Op: "get", Key: "k", Err: tiercache.ErrClosed}, http.StatusServiceUnavailable, codeUnavailable},
		{fmt.Errorf("%w: %w", tiercache.ErrCircuitOpen, tiercache.ErrUnavailable), http.StatusServiceUnavailable, codeUnavailable},
		{fmt.Errorf("%w: %w", tiercache.ErrUnavailable, l2), http.StatusServiceUnavailable, codeUnavailable},
		{fmt.Errorf("%w: %w", context.DeadlineExceeded, l2), http.StatusServiceUnavailable, codeUnavailable},
	} {
		status, code, msg, _ := s.classify(tc.err)
		if status != tc.status || code != tc.code || msg == "" || strings.Contains(msg, "127.0.0.1") || strings.Contains(msg, "tiercache:") {
			t.Errorf("%v: %d %s %q, want %d %s and a message without internals", tc.err, status, code, msg, tc.status, tc.code)
		}
	}
}
