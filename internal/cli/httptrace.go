package cli

import (
	"net/http"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// httpTracerName is the instrumentation scope of the request spans.
const httpTracerName = "github.com/tiercache/tiercache/serve"

// fixedRoutes are serve's routes that hold no key; any other path is
// named by its route pattern, never by itself (keys can be personal
// data).
var fixedRoutes = []string{"/", "/healthz", "/readyz", "/metrics", "/v1/stats", "/v1/warm", "/v1/invalidate", "/v1/clear"}

// untracedRoutes are the probes' and the scraper's routes: a span every
// few seconds per probe would bury the requests worth looking at.
var untracedRoutes = []string{"/healthz", "/readyz", "/metrics"}

// traceRequests gives each request a server span, the parent of the
// cache's spans for that request, except the untracedRoutes. A W3C
// traceparent header in the request makes the span a child of the
// caller's, so that the sampler follows the caller's decision.
func traceRequests(h http.Handler, tp trace.TracerProvider) http.Handler {
	tracer := tp.Tracer(httpTracerName)
	prop := propagation.TraceContext{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := httpRoute(r.URL.Path)
		if slices.Contains(untracedRoutes, route) {
			h.ServeHTTP(w, r)
			return
		}
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, strings.TrimSpace(r.Method+" "+route),
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route)))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w}
		h.ServeHTTP(sw, r.WithContext(ctx))
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if id := w.Header().Get("X-Request-Id"); id != "" {
			span.SetAttributes(attribute.String("tiercache.request_id", id))
		}
		if status >= 500 {
			span.SetStatus(codes.Error, http.StatusText(status))
		}
	})
}

// httpRoute is the route of path: the path itself for the fixed routes,
// the pattern for the others, "" for unknown paths.
func httpRoute(path string) string {
	switch {
	case slices.Contains(fixedRoutes, path):
		return path
	case strings.HasPrefix(path, "/v1/cache/"):
		return "/v1/cache/{key}"
	case strings.HasPrefix(path, "/assets/"):
		return "/assets/"
	}
	return ""
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
