// Package tracing follows one op across the services with OpenTelemetry (DESIGN.md §11): a span
// for the HTTP request and the op in ingest, for the fold in lifecycle, and for the delivery and
// each target in dispatch, joined across NATS by the W3C traceparent header on the command and
// on the domain event (with the request id beside it, for the logs). Tracing is off unless
// Setup finds an OTLP endpoint in the standard OTEL_* variables (or a test calls Enable); while
// it is off, Start returns the context it was given and a no-op span, and Headers nil: no
// allocation, no header.
package tracing

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"pushgo.dev/gateway/proto/logctx"
)

// HeaderRequestID carries the id of the HTTP request that made a command, onto the command
// and its domain event, for the logs of lifecycle and dispatch.
const HeaderRequestID = "Pushgo-Request-Id"

// propagator reads and writes traceparent (and tracestate).
var propagator = propagation.TraceContext{}

// current is the provider of an enabled tracing; nil when off.
var current atomic.Pointer[provider]

type provider struct{ tp trace.TracerProvider }

// Enable turns tracing on with tp (nil turns it off).
func Enable(tp trace.TracerProvider) {
	if tp == nil {
		current.Store(nil)
		return
	}
	current.Store(&provider{tp})
}

// Enabled reports whether spans are recorded.
func Enabled() bool { return current.Load() != nil }

// Start starts span name of instrumentation scope (the service: "pushgo/ingest", …) as a
// child of ctx's span. With tracing off it returns ctx and ctx's (non-recording) span.
func Start(ctx context.Context, scope, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	p := current.Load()
	if p == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return p.tp.Tracer(scope).Start(ctx, name, opts...)
}

// Headers returns NATS headers carrying ctx's trace context and request id, nil when ctx has
// neither (tracing off, no request id).
func Headers(ctx context.Context) nats.Header {
	var h nats.Header
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		h = nats.Header{}
		propagator.Inject(ctx, carrier(h))
	}
	if id := logctx.RequestID(ctx); id != "" {
		if h == nil {
			h = nats.Header{}
		}
		h[HeaderRequestID] = []string{id}
	}
	return h
}

// FromHeaders returns ctx with the trace context and request id that h (a message's headers)
// carries.
func FromHeaders(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	if id := h.Get(HeaderRequestID); id != "" {
		ctx = logctx.WithRequestID(ctx, id)
	}
	if _, ok := h["traceparent"]; ok && Enabled() {
		ctx = propagator.Extract(ctx, carrier(h))
	}
	return ctx
}

// carrier reads and writes NATS headers under the propagator's own key spelling
// ("traceparent", as W3C writes it): NATS header keys are case-sensitive, and
// propagation.HeaderCarrier would write HTTP's canonical "Traceparent".
type carrier nats.Header

func (c carrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c carrier) Set(key, value string) { c[key] = []string{value} }

func (c carrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Setup turns tracing on when the environment names an OTLP endpoint
// (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; protocol from
// OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL, http/protobuf by default or grpc; the exporter reads
// the other OTEL_EXPORTER_OTLP_* variables itself) and OTEL_SDK_DISABLED is not true. The
// service name is OTEL_SERVICE_NAME, else service. shutdown flushes the spans not yet sent.
func Setup(ctx context.Context, service string) (shutdown func(context.Context) error, err error) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") ||
		(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "") {
		return func(context.Context) error { return nil }, nil
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exp *otlptrace.Exporter
	switch protocol {
	case "", "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	case "grpc":
		exp, err = otlptracegrpc.New(ctx)
	default:
		return nil, errors.New("tracing: OTEL_EXPORTER_OTLP_PROTOCOL must be http/protobuf or grpc, not " + protocol)
	}
	if err != nil {
		return nil, err
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(semconv.ServiceName(service)))
	if err != nil {
		return nil, err
	}
	if fromEnv, err := resource.New(ctx, resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, fromEnv); err == nil {
			res = merged
		}
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagator)
	Enable(tp)
	return func(ctx context.Context) error {
		Enable(nil)
		return tp.Shutdown(ctx)
	}, nil
}
