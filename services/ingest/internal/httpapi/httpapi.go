// Package httpapi is the REST face of ingest: grpc-gateway routes in front of the gRPC
// services, wrapped in the HTTP-only checks of DESIGN.md §6.2 steps 1–3 (gateway token, body
// size, content type, strict JSON) and the envelope of §6.1 on every response, including
// 404/405/413/500, with an X-Request-Id.
package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/auth"
	"pushgo.dev/gateway/services/ingest/internal/jsonreq"
)

// MaxBody is the largest request body accepted (32 KiB); larger ones get 413.
const MaxBody = 32 << 10

// Options configures the handler.
type Options struct {
	Token auth.Token
	// Ready reports whether the service can serve (NATS reachable, streams present).
	Ready  func(context.Context) error
	Logger *slog.Logger
	// Streams serves /device/stream (SSE) and /device/ws; nil answers them 404.
	Streams Streams
	// KeepAlive is the keep-alive interval of idle streams (DefaultKeepAlive when 0).
	KeepAlive time.Duration
	// StreamWriteTimeout bounds each write of a stream and each wait for a WebSocket pong
	// (DefaultStreamWriteTimeout when 0).
	StreamWriteTimeout time.Duration
	// Done, when closed, ends the open streams (the server is shutting down).
	Done <-chan struct{}
}

type handler struct {
	opts   Options
	mux    *runtime.ServeMux
	routes map[string]protoreflect.MessageType
}

// New returns the HTTP handler of the public API; conn reaches the gRPC services (in process).
func New(ctx context.Context, conn grpc.ClientConnInterface, opts Options) (http.Handler, error) {
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler{}),
		runtime.WithErrorHandler(func(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, _ *http.Request, err error) {
			writeError(w, gatewayError(err))
		}),
		runtime.WithRoutingErrorHandler(func(_ context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, code int) {
			if code == http.StatusMethodNotAllowed {
				writeError(w, apierr.Newf("method_not_allowed", "method %s is not allowed on %s", r.Method, r.URL.Path))
				return
			}
			writeError(w, apierr.Newf("route_not_found", "no route %s", r.URL.Path))
		}),
		runtime.WithDisablePathLengthFallback(),
		// Only the Authorization header matters to the services (grpc-gateway forwards it
		// itself); skip turning every other header into metadata.
		runtime.WithIncomingHeaderMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithWriteContentLength(),
	)
	if err := apiv1.RegisterEventServiceHandlerClient(ctx, mux, apiv1.NewEventServiceClient(conn)); err != nil {
		return nil, err
	}
	if err := apiv1.RegisterChannelServiceHandlerClient(ctx, mux, apiv1.NewChannelServiceClient(conn)); err != nil {
		return nil, err
	}
	if err := apiv1.RegisterDeviceServiceHandlerClient(ctx, mux, apiv1.NewDeviceServiceClient(conn)); err != nil {
		return nil, err
	}
	if err := apiv1.RegisterMessageServiceHandlerClient(ctx, mux, apiv1.NewMessageServiceClient(conn)); err != nil {
		return nil, err
	}
	routes, err := jsonRoutes(
		apiv1.File_pushgo_api_v1_event_proto.Services().ByName("EventService"),
		apiv1.File_pushgo_api_v1_channel_proto.Services().ByName("ChannelService"),
		apiv1.File_pushgo_api_v1_device_proto.Services().ByName("DeviceService"),
		apiv1.File_pushgo_api_v1_device_proto.Services().ByName("MessageService"),
	)
	if err != nil {
		return nil, err
	}
	return &handler{opts: opts, mux: mux, routes: routes}, nil
}

// gatewayError recovers the API error from what the gateway hands its error handler.
func gatewayError(err error) *apierr.Error {
	if st, ok := status.FromError(err); ok {
		return apierr.FromStatus(st)
	}
	if hse, ok := errors.AsType[*runtime.HTTPStatusError](err); ok && hse.HTTPStatus == http.StatusBadRequest {
		return apierr.New("route_not_found", "malformed path")
	}
	return apierr.FromError(err)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Request-Id", requestID(r))
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			h.opts.Logger.Error("panic serving HTTP", "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			writeError(w, apierr.New("internal_error", "internal error"))
		}
	}()
	switch r.URL.Path {
	case "/healthz":
		h.health(w, r, nil)
		return
	case "/readyz":
		h.health(w, r, h.opts.Ready)
		return
	}
	// 1. Gateway token.
	if !h.opts.Token.Check(r.Header.Get("Authorization")) {
		writeError(w, apierr.New("authentication_failed", "authentication failed: send Authorization: Bearer <token>"))
		return
	}
	switch r.URL.Path {
	case "/device/stream":
		h.sse(w, r)
		return
	case "/device/ws":
		h.ws(w, r)
		return
	}
	// 2. Body size.
	if r.ContentLength > MaxBody {
		writeError(w, apierr.Newf("payload_too_large", "request body exceeds %d bytes", MaxBody))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, apierr.Newf("payload_too_large", "request body exceeds %d bytes", MaxBody))
			return
		}
		writeError(w, apierr.New("invalid_json_syntax", "could not read the request body"))
		return
	}
	// 3. Content type and strict JSON, for the routes that take a JSON body.
	if mt, ok := h.routes[r.URL.Path]; ok && r.Method == http.MethodPost {
		if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
			writeError(w, apierr.New("missing_json_content_type", "missing Content-Type: application/json"))
			return
		}
		msg := mt.New().Interface()
		if e := jsonreq.Decode(body, msg); e != nil {
			writeError(w, e)
			return
		}
		r.Body = &decodedBody{msg: msg}
	} else {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	h.mux.ServeHTTP(w, r)
}

// health answers /healthz (check == nil: the process is up) and /readyz.
func (h *handler) health(w http.ResponseWriter, r *http.Request, check func(context.Context) error) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, apierr.Newf("method_not_allowed", "method %s is not allowed on %s", r.Method, r.URL.Path))
		return
	}
	if check != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := check(ctx); err != nil {
			h.opts.Logger.Warn("not ready", "err", err)
			writeError(w, apierr.New("unavailable", "not ready: "+err.Error()))
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"success":true,"data":{"status":"ok"},"error":null,"error_code":null}`)
}

// requestID is the client's X-Request-Id when it is a sane token, else a new random one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); len(id) > 0 && len(id) <= 128 {
		ok := true
		for i := 0; i < len(id) && ok; i++ {
			c := id[i]
			ok = c == '-' || c == '_' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		}
		if ok {
			return id
		}
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
