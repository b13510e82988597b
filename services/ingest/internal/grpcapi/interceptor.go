// Package grpcapi implements the public gRPC services (EventService, ChannelService) and the
// one interceptor chain that both transports go through: the REST gateway calls the same
// handlers through an in-process connection (Inline), so authentication, error mapping and
// panic recovery are written once.
package grpcapi

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/auth"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
	"pushgo.dev/gateway/services/ingest/internal/tenants"
)

// ErrorCodeTrailer is the trailer of a failed gRPC call that carries its error_code.
const ErrorCodeTrailer = "pushgo-error-code"

// Interceptor authenticates the call with the gateway token, recovers panics, and maps every
// error to a status carrying its error_code (apierr.Error.Status). Unexpected errors become
// internal_error; their detail is logged, never returned.
//
// It also puts the client address in the context (clientaddr.FromContext) for calls on the gRPC
// listener: the peer, or, when the peer is a trusted proxy, the x-forwarded-for metadata it set.
// REST calls arrive in process with the address the HTTP handler already resolved, which is
// kept.
func Interceptor(token auth.Token, addrs *clientaddr.Resolver, log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if r := recover(); r != nil {
				log.ErrorContext(ctx, "panic in handler", "method", info.FullMethod, "panic", r, "stack", string(debug.Stack()))
				resp, err = nil, apierr.New("internal_error", "internal error")
			}
		}()
		if _, ok := clientaddr.FromContext(ctx); !ok {
			var a clientaddr.Addr // unknown without a peer
			if p, ok := peer.FromContext(ctx); ok {
				md, _ := metadata.FromIncomingContext(ctx)
				a = addrs.FromNet(p.Addr, md.Get("x-forwarded-for"))
			}
			ctx = clientaddr.NewContext(ctx, a)
		}
		if tenants.MethodClass(info.FullMethod) == tenants.ClassOpen {
			// The standard health service: no token, and its own status codes (NotFound for
			// an unknown service), which are not API errors.
			return handler(ctx, req)
		}
		if token.Enabled() {
			var header string
			if md, ok := metadata.FromIncomingContext(ctx); ok {
				if v := md.Get("authorization"); len(v) > 0 {
					header = v[0]
				}
			}
			if !token.Check(header) {
				return nil, apierr.New("authentication_failed", "authentication failed: send Authorization: Bearer <token>")
			}
		}
		resp, err = handler(ctx, req)
		if err != nil {
			e := apierr.FromError(err)
			if e.Code == "internal_error" || e.Code == "unavailable" {
				log.WarnContext(ctx, "request failed", "method", info.FullMethod, "code", e.Code, "err", err)
			}
			// The error_code as a plain trailer too, for tools that do not decode the status's
			// ErrorInfo detail (grpcurl -v prints it). In process (REST) there is no stream to
			// carry it, and nothing needs it.
			_ = grpc.SetTrailer(ctx, metadata.Pairs(ErrorCodeTrailer, e.Code))
			if _, remote := peer.FromContext(ctx); remote { // REST answers are counted where they are written
				metrics.APIErrors.WithLabelValues(e.Code).Inc()
				if e.HTTPStatus() == http.StatusTooManyRequests {
					metrics.RateLimitRefusals.WithLabelValues(e.Code).Inc()
				}
			}
			return nil, e // a status error for gRPC (Error.GRPCStatus), itself in process
		}
		return resp, nil
	}
}

// TenantGate authenticates the calls of a hosted gateway (tenants.Gate: the admin token on
// TenantService, a tenant's API key on the others, nothing on MessageService, whose device key
// is the credential) and hands the handler a context carrying the result. Chain it after
// Interceptor, which maps its errors. REST calls arrive already authenticated by the HTTP
// middleware and pass through.
func TenantGate(gate *tenants.Gate) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		var header string
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get("authorization"); len(v) > 0 {
				header = v[0]
			}
		}
		ctx, err := gate.Authenticate(ctx, tenants.MethodClass(info.FullMethod), header)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Chain runs interceptors in order, the first outermost, as grpc.ChainUnaryInterceptor does
// (Inline takes one interceptor).
func Chain(interceptors ...grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		next := handler
		for i := len(interceptors) - 1; i >= 0; i-- {
			ic, h := interceptors[i], next
			next = func(ctx context.Context, req any) (any, error) { return ic(ctx, req, info, h) }
		}
		return next(ctx, req)
	}
}
