package tracing

import (
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"pushgo.dev/gateway/proto/logctx"
)

func TestOffCostsNothing(t *testing.T) {
	ctx := t.Context()
	if Enabled() || Headers(ctx) != nil {
		t.Fatal("tracing off, yet headers")
	}
	got, span := Start(ctx, "s", "n")
	if got != ctx || span.IsRecording() {
		t.Fatal("Start with tracing off made a span")
	}
	allocs := testing.AllocsPerRun(100, func() {
		c, s := Start(ctx, "s", "n")
		s.End()
		_ = Headers(c)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per op with tracing off", allocs)
	}
}

func TestHeadersRoundTrip(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	Enable(tp)
	t.Cleanup(func() { Enable(nil) })
	ctx, span := Start(logctx.WithRequestID(t.Context(), "req-1"), "s", "parent")
	defer span.End()
	h := Headers(ctx)
	if len(h["traceparent"]) != 1 || h.Get(HeaderRequestID) != "req-1" {
		t.Fatalf("headers %v", h)
	}
	got := FromHeaders(t.Context(), h)
	sc := trace.SpanContextFromContext(got)
	if sc.TraceID() != span.SpanContext().TraceID() || sc.SpanID() != span.SpanContext().SpanID() || !sc.IsRemote() {
		t.Fatalf("span context %v, want the parent's", sc)
	}
	if logctx.RequestID(got) != "req-1" {
		t.Fatal("request id lost")
	}
	// Only the request id without a trace.
	Enable(nil)
	if h := Headers(logctx.WithRequestID(t.Context(), "req-2")); len(h) != 1 || h.Get(HeaderRequestID) != "req-2" {
		t.Fatalf("headers without a trace: %v", h)
	}
}
