package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tiercache/tiercache/config"
)

// tracingFlushTimeout bounds the export of the last spans at stop.
const tracingFlushTimeout = 5 * time.Second

// newTracerProvider returns the tracer provider of the tracing section,
// or nil when tracing is off. The stdout exporter writes to out. Neither
// exporter connects here: an unreachable collector costs failed exports
// (logged), never the start.
func newTracerProvider(ctx context.Context, t config.Tracing, out io.Writer, logger *slog.Logger) (*sdktrace.TracerProvider, error) {
	if !t.Enabled {
		return nil, nil
	}
	var exp sdktrace.SpanExporter
	var err error
	switch t.Exporter {
	case "stdout":
		exp, err = stdouttrace.New(stdouttrace.WithWriter(out))
	default:
		// The endpoint is a whole URL (package config already chose between
		// tracing.endpoint and OTEL_EXPORTER_OTLP_*ENDPOINT); the exporter
		// still reads the other OTEL_EXPORTER_OTLP_* variables (timeout,
		// compression, certificates, and the headers unless ours are set).
		opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(t.Endpoint)}
		if t.Headers != "" {
			h, herr := config.ParseHeaders(t.Headers) // checked by package config
			if herr != nil {
				return nil, fmt.Errorf("tracing.headers: %w", herr)
			}
			opts = append(opts, otlptracehttp.WithHeaders(h))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	// OTEL_RESOURCE_ATTRIBUTES adds attributes; service.name is the one
	// package config resolved (it already honours OTEL_SERVICE_NAME).
	res, err := resource.New(ctx, resource.WithFromEnv(), resource.WithTelemetrySDK(),
		resource.WithAttributes(attribute.String("service.name", t.ServiceName), attribute.String("service.version", version())))
	switch {
	case res == nil:
		return nil, fmt.Errorf("tracing resource: %w", err)
	case err != nil: // a malformed OTEL_RESOURCE_ATTRIBUTES: the rest is kept
		logger.Warn("tracing: resource attributes partly ignored", "err", err)
	}
	// Failed exports go to the service's log, not to the standard
	// library's logger.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("tracing export failed", "err", err)
	}))
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(t.SampleRatio))),
	), nil
}

// stopTracing exports the spans still buffered, for up to
// tracingFlushTimeout, and stops tp. Called after the cache is closed, so
// that the spans of its last operations are exported too.
func stopTracing(ctx context.Context, tp *sdktrace.TracerProvider, logger *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tracingFlushTimeout)
	defer cancel()
	if err := tp.Shutdown(sctx); err != nil {
		logger.Warn("tracing: the last spans were not all exported", "err", err)
	}
}

// tracingSummary says where spans go, for the start-up line: "off",
// "stdout" or the OTLP endpoint without its query (package config
// refuses credentials in the endpoint; a query might still hold a key).
func tracingSummary(t config.Tracing) string {
	switch {
	case !t.Enabled:
		return "off"
	case t.Exporter == "stdout":
		return "stdout"
	}
	u, err := url.Parse(t.Endpoint)
	if err != nil {
		return "otlp-http"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}
