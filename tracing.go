package tiercache

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracing is off unless Options.TracerProvider is set; then every L2
// operation attempt and every loader call gets a span. Off, the cost is
// one nil check per operation. Spans carry no keys: keys can be personal
// data, and an operation on many keys would carry too many.

// tracerName is the instrumentation scope of the spans.
const tracerName = "github.com/tiercache/tiercache"

// startL2Span starts the span of one L2 attempt, named
// "tiercache.l2.<op>".
func (o *observer) startL2Span(ctx context.Context, op string) (context.Context, trace.Span) {
	return o.tracer.Start(ctx, "tiercache.l2."+op,
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("db.system.name", o.system),
			attribute.String("db.operation.name", op),
		))
}

// startLoadSpan starts the span of one loader call, "tiercache.load".
func (o *observer) startLoadSpan(ctx context.Context, keys int) (context.Context, trace.Span) {
	return o.tracer.Start(ctx, "tiercache.load",
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.Int("tiercache.keys", keys)))
}

// endSpan ends a span with the operation's result. The error's text is
// left out: L2 errors name the key.
func endSpan(span trace.Span, err error, result string) {
	span.SetAttributes(attribute.String("tiercache.result", result))
	if err != nil && result != "ok" && result != "not_found" {
		span.SetStatus(codes.Error, result)
	}
	span.End()
}
