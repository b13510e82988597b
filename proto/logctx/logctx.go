// Package logctx carries the ids of a request and of its op in a context, so that every log
// line about an op names them (DESIGN.md §11): request_id, channel_id, event_id, op_id, and,
// when the op is traced, trace_id. Code logs with the *Context methods of slog; Handler adds
// what the context carries. Device keys are credentials: log Device(key), never the key.
package logctx

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

type ctxKey struct{}

// ids are what a context carries for the log.
type ids struct {
	requestID, channelID, eventID, opID string
}

func from(ctx context.Context) ids {
	v, _ := ctx.Value(ctxKey{}).(ids)
	return v
}

// WithRequestID returns ctx carrying the request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	v := from(ctx)
	v.requestID = id
	return context.WithValue(ctx, ctxKey{}, v)
}

// WithOp returns ctx carrying the op's ids; empty ones keep what ctx had.
func WithOp(ctx context.Context, channelID, eventID, opID string) context.Context {
	v := from(ctx)
	if channelID != "" {
		v.channelID = channelID
	}
	if eventID != "" {
		v.eventID = eventID
	}
	if opID != "" {
		v.opID = opID
	}
	return context.WithValue(ctx, ctxKey{}, v)
}

// RequestID is the request id ctx carries, "" for none.
func RequestID(ctx context.Context) string { return from(ctx).requestID }

// Device is how a log line names a device: the first 12 hex digits of SHA-256 of its key,
// which tells devices apart without being the credential.
func Device(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:6])
}

// Handler adds the ids a record's context carries to the record.
type Handler struct{ slog.Handler }

// NewHandler wraps h.
func NewHandler(h slog.Handler) *Handler { return &Handler{h} }

// Handle adds request_id, channel_id, event_id, op_id and trace_id when the context has them.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	v := from(ctx)
	for _, a := range []struct{ k, v string }{{"request_id", v.requestID}, {"channel_id", v.channelID}, {"event_id", v.eventID}, {"op_id", v.opID}} {
		if a.v != "" {
			r.AddAttrs(slog.String(a.k, a.v))
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

// WithAttrs keeps the wrapper around the derived handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &Handler{h.Handler.WithAttrs(attrs)}
}

// WithGroup keeps the wrapper around the derived handler.
func (h *Handler) WithGroup(name string) slog.Handler { return &Handler{h.Handler.WithGroup(name)} }
