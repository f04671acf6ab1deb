package cli

import (
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tiercache/tiercache/internal/redistest"
	"github.com/tiercache/tiercache/internal/tiercachetest"
)

// otlpReceiver is an OTLP/HTTP trace receiver that keeps what it got.
type otlpReceiver struct {
	mu      sync.Mutex
	spans   []string // span names, in arrival order
	got     []*tracepb.Span
	service []string // service.name of each resource
	errs    []string // requests that were not a protobuf export
	auth    []string // Authorization header of each request
}

func (r *otlpReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.auth = append(r.auth, req.Header.Get("Authorization"))
	var msg coltracepb.ExportTraceServiceRequest
	switch {
	case req.Method != http.MethodPost || req.URL.Path != "/v1/traces":
		r.errs = append(r.errs, req.Method+" "+req.URL.Path)
	case req.Header.Get("Content-Type") != "application/x-protobuf":
		r.errs = append(r.errs, "content type "+req.Header.Get("Content-Type"))
	case err != nil || len(body) == 0:
		r.errs = append(r.errs, "empty body")
	default:
		if err := proto.Unmarshal(body, &msg); err != nil {
			r.errs = append(r.errs, "not an ExportTraceServiceRequest: "+err.Error())
			break
		}
	}
	for _, rs := range msg.GetResourceSpans() {
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				r.service = append(r.service, a.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans = append(r.spans, s.GetName())
				r.got = append(r.got, s)
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func (r *otlpReceiver) has(span string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.spans, span)
}

func (r *otlpReceiver) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "spans " + strings.Join(r.spans, ",") + "; services " + strings.Join(r.service, ",") + "; errors " + strings.Join(r.errs, ",")
}

// The caller's trace context of the traced PUT, and its key, which no
// span may show.
const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
	tracedKey   = "user-4711-private"
)

// checkSpanTree checks that the PUT's server span continues the caller's
// trace and is the parent of the Redis set span, that no span names the
// key, and that probes and scrapes have none.
func checkSpanTree(t *testing.T, spans []*tracepb.Span) {
	t.Helper()
	var server *tracepb.Span
	for _, s := range spans {
		switch s.GetName() {
		case "PUT /v1/cache/{key}":
			server = s
		case "GET /healthz", "GET /readyz", "GET /metrics":
			t.Errorf("a span for the probe or scrape %s", s.GetName())
		}
		for _, a := range s.GetAttributes() {
			if strings.Contains(s.GetName()+a.GetKey()+a.GetValue().GetStringValue(), tracedKey) {
				t.Errorf("span %s shows the key: %v", s.GetName(), a)
			}
		}
	}
	if server == nil {
		t.Fatalf("no span PUT /v1/cache/{key}")
	}
	if hex.EncodeToString(server.GetTraceId()) != callerTrace || hex.EncodeToString(server.GetParentSpanId()) != callerSpan {
		t.Errorf("the PUT span is in trace %x under %x, want the caller's %s under %s",
			server.GetTraceId(), server.GetParentSpanId(), callerTrace, callerSpan)
	}
	for _, s := range spans {
		if s.GetName() == "tiercache.l2.set" && slices.Equal(s.GetParentSpanId(), server.GetSpanId()) {
			return
		}
	}
	t.Errorf("no tiercache.l2.set span under the PUT span")
}

// clearOTELEnv unsets the standard variables that would redirect or
// change the exports.
func clearOTELEnv(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
		"OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
}

// TestRun_ServeTracing runs serve with tracing to an OTLP/HTTP receiver
// and a real Redis: the spans of the Redis operations behind PUT and GET
// arrive as protobuf exports with the configured headers and service
// name; then, with no scheduled export, the spans still buffered at stop
// are flushed before serve returns.
func TestRun_ServeTracing(t *testing.T) {
	clearEnv(t)
	clearOTELEnv(t)
	rcv := &otlpReceiver{}
	collector := httptest.NewServer(rcv)
	defer collector.Close()
	srv := redistest.NewStandalone(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	t.Setenv("TIERCACHE_TRACING_ENABLED", "true")
	t.Setenv("TIERCACHE_TRACING_ENDPOINT", collector.URL+"/v1/traces")
	t.Setenv("TIERCACHE_TRACING_HEADERS", "Authorization=Bearer%20s3cret-otlp")
	t.Setenv("TIERCACHE_TRACING_SERVICE_NAME", "cache-under-test")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100") // milliseconds between exports
	s := startServe(t, "serve", "--addr", "127.0.0.1:0")
	base := "http://" + s.addr

	// The PUT continues the caller's trace (W3C traceparent).
	req, err := http.NewRequestWithContext(t.Context(), "PUT", base+"/v1/cache/"+tracedKey, strings.NewReader("v"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	if code, body := request(t, "GET", base+"/v1/cache/absent", "", ""); code != http.StatusNotFound {
		t.Fatalf("GET absent: %d %s", code, body)
	}
	for _, probe := range []string{"/healthz", "/readyz", "/metrics"} { // no span
		if code, body := request(t, "GET", base+probe, "", ""); code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", probe, code, body)
		}
	}
	deadline := time.Now().Add(runTimeout)
	for !rcv.has("tiercache.l2.set") || !rcv.has("tiercache.l2.get") {
		if time.Now().After(deadline) {
			t.Fatalf("no set and get spans exported after %v: %v\n%s", runTimeout, rcv, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, s.stderr)
	}
	logs := s.stderr.String()

	// No scheduled export within the test: only the flush at stop can
	// deliver the del span.
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")
	s = startServe(t, "serve", "--addr", "127.0.0.1:0")
	// Ready first: a DELETE before the first connection to Redis is
	// queued (202), and its span would come from the replay.
	for ready := time.Now().Add(runTimeout); ; {
		code, _ := request(t, "GET", "http://"+s.addr+"/readyz", "", "")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(ready) {
			t.Fatalf("serve not ready after %v:\n%s", runTimeout, s.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code, body := request(t, "DELETE", "http://"+s.addr+"/v1/cache/"+tracedKey, "", ""); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	if rcv.has("tiercache.l2.del") {
		t.Fatalf("the del span was exported before the stop: the flush is not tested")
	}
	if code := s.stop(t); code != 0 {
		t.Fatalf("exit code %d:\n%s", code, s.stderr)
	}
	if !rcv.has("tiercache.l2.del") {
		t.Errorf("the del span was not exported by the stop: %v", rcv)
	}
	logs += s.stderr.String()

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	checkSpanTree(t, rcv.got)
	if len(rcv.errs) > 0 {
		t.Errorf("bad exports: %v", rcv.errs)
	}
	for _, a := range rcv.auth {
		if a != "Bearer s3cret-otlp" {
			t.Errorf("Authorization %q, want the configured header", a)
		}
	}
	for _, svc := range rcv.service {
		if svc != "cache-under-test" {
			t.Errorf("service.name %q, want cache-under-test", svc)
		}
	}
	if strings.Contains(logs, "s3cret-otlp") {
		t.Errorf("the log shows the header:\n%s", logs)
	}
	if !strings.Contains(logs, "tracing="+collector.URL+"/v1/traces") {
		t.Errorf("the start-up line does not say where spans go:\n%s", logs)
	}
}

// TestRun_ServeTracingStdout checks that tracing.exporter stdout writes
// the spans to serve's standard output, as JSON, by the stop at the
// latest.
func TestRun_ServeTracingStdout(t *testing.T) {
	clearEnv(t)
	clearOTELEnv(t)
	srv := redistest.NewStandalone(t)
	t.Setenv("REDIS_URL", "redis://"+srv.Addr+"/0")
	t.Setenv("TIERCACHE_TRACING_ENABLED", "true")
	t.Setenv("TIERCACHE_TRACING_EXPORTER", "stdout")
	var stdout, stderr tiercachetest.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() { done <- Run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, &stdout, &stderr) }()
	deadline := time.Now().Add(runTimeout)
	var addr string
	for addr == "" {
		if m := listeningLine.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1] + m[2]
		} else if time.Now().After(deadline) || len(done) > 0 {
			cancel()
			t.Fatalf("serve did not start:\n%s", &stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := request(t, "PUT", "http://"+addr+"/v1/cache/k", "v", ""); code != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", code, body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d:\n%s", code, &stderr)
		}
	case <-time.After(runTimeout):
		t.Fatalf("serve did not stop:\n%s", &stderr)
	}
	if out := stdout.String(); !strings.Contains(out, `"Name":"tiercache.l2.set"`) || !strings.Contains(out, `"Value":"tiercache"`) {
		t.Errorf("stdout lacks the set span of service tiercache:\n%.3000s", out)
	}
	if !strings.Contains(stderr.String(), "tracing=stdout") {
		t.Errorf("the start-up line does not say tracing=stdout:\n%s", &stderr)
	}
}
