// Package httpapi is the REST face of ingest: grpc-gateway routes in front of the gRPC
// services, wrapped in the HTTP-only checks of DESIGN.md §6.2 steps 1–3 (gateway token, body
// size, content type, strict JSON) and the envelope of §6.1 on every response, including
// 404/405/413/500, with an X-Request-Id.
package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/proto/logctx"
	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/proto/tracing"
	"pushgo.dev/gateway/services/ingest/internal/apidoc"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/auth"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
	"pushgo.dev/gateway/services/ingest/internal/cors"
	"pushgo.dev/gateway/services/ingest/internal/jsonreq"
	"pushgo.dev/gateway/services/ingest/internal/retryhold"
	"pushgo.dev/gateway/services/ingest/internal/tenants"
)

// MaxBody is the largest request body accepted (32 KiB); larger ones get 413.
const MaxBody = 32 << 10

// Deadlines of a request on the non-streaming routes (DESIGN.md §8.3); the server itself bounds
// the headers (ReadHeaderTimeout) and idle keep-alive connections (IdleTimeout).
const (
	// DefaultBodyTimeout bounds reading the whole body, counted from the end of the headers: a
	// client that trickles its body (1 byte/s) holds a connection and a goroutine for at most
	// this long, then gets 408 request_timeout.
	DefaultBodyTimeout = 10 * time.Second
	// DefaultWriteTimeout bounds writing the answer, counted from its first byte (not from the
	// request's start: an op may wait for its outcome far longer), so a client that does not
	// read its answer cannot hold the connection.
	DefaultWriteTimeout = 10 * time.Second
)

// Options configures the handler.
type Options struct {
	Token auth.Token
	// Gate, when set, makes this a hosted gateway: it authenticates every request (admin
	// token, tenant API key, or none on the device-keyed and health routes) and the admin
	// routes /admin/tenant/* exist. Without it they answer route_not_found.
	Gate *tenants.Gate
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
	// BodyTimeout and WriteTimeout are the deadlines of non-streaming requests
	// (DefaultBodyTimeout and DefaultWriteTimeout when 0).
	BodyTimeout, WriteTimeout time.Duration
	// Addrs resolves the client address of every request (the TCP peer, or X-Forwarded-For
	// behind a trusted proxy), put in the request context for the per-address limits; nil
	// trusts no proxy.
	Addrs *clientaddr.Resolver
	// Hold holds the requests of a direct client that come back on a connection before the
	// Retry-After it was given there has passed (nil: never).
	Hold *retryhold.Holder
	// CORS lets browser pages on its origins call the API (nil: none).
	CORS *cors.Policy
	// Metrics, when set, serves GET /metrics behind the token (the admin token in hosted
	// mode); nil answers it route_not_found (metrics elsewhere: --metrics-addr).
	Metrics http.Handler
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
	if err := apiv1.RegisterActivityServiceHandlerClient(ctx, mux, apiv1.NewActivityServiceClient(conn)); err != nil {
		return nil, err
	}
	services := []protoreflect.ServiceDescriptor{
		apiv1.File_pushgo_api_v1_event_proto.Services().ByName("EventService"),
		apiv1.File_pushgo_api_v1_channel_proto.Services().ByName("ChannelService"),
		apiv1.File_pushgo_api_v1_device_proto.Services().ByName("DeviceService"),
		apiv1.File_pushgo_api_v1_device_proto.Services().ByName("MessageService"),
		apiv1.File_pushgo_api_v1_activity_proto.Services().ByName("ActivityService"),
	}
	if opts.Gate != nil {
		if err := apiv1.RegisterTenantServiceHandlerClient(ctx, mux, apiv1.NewTenantServiceClient(conn)); err != nil {
			return nil, err
		}
		services = append(services, apiv1.File_pushgo_api_v1_tenant_proto.Services().ByName("TenantService"))
	}
	routes, err := jsonRoutes(services...)
	if err != nil {
		return nil, err
	}
	return &handler{opts: opts, mux: mux, routes: routes}, nil
}

// gatewayError recovers the API error from what the gateway hands its error handler.
func gatewayError(err error) *apierr.Error {
	if e, ok := apierr.As(err); ok { // in process: the handler's own error
		return e
	}
	if st, ok := status.FromError(err); ok {
		return apierr.FromStatus(st)
	}
	if hse, ok := errors.AsType[*runtime.HTTPStatusError](err); ok && hse.HTTPStatus == http.StatusBadRequest {
		return apierr.New("route_not_found", "malformed path")
	}
	return apierr.FromError(err)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reqID := requestID(r)
	w.Header().Set("X-Request-Id", reqID)
	r = r.WithContext(logctx.WithRequestID(r.Context(), reqID))
	if r.URL.Path != "/device/stream" && r.URL.Path != "/device/ws" { // live streams: metrics.LiveStreams
		sw := &statusWriter{ResponseWriter: w}
		w = sw
		began := time.Now()
		span := trace.SpanFromContext(r.Context()) // not recording: tracing is off
		if tracing.Enabled() {
			var ctx context.Context
			ctx, span = tracing.Start(r.Context(), tracerScope, r.Method+" "+h.routeLabel(r.URL.Path), trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path),
					attribute.String("pushgo.request_id", reqID)))
			r = r.WithContext(ctx)
		}
		defer func() { // after the recovery below, which may write the 500
			route := h.routeLabel(r.URL.Path)
			metrics.HTTPRequests.WithLabelValues(route, strconv.Itoa(sw.code())).Observe(metrics.Since(began))
			if span.IsRecording() {
				span.SetAttributes(attribute.Int("http.response.status_code", sw.code()), attribute.String("http.route", route))
				if sw.code() >= 500 {
					span.SetStatus(codes.Error, http.StatusText(sw.code()))
				}
				span.End()
			}
		}()
	}
	if h.opts.CORS.Apply(w, r) {
		return // a preflight, answered
	}
	// The gateway hands this context to the in-process gRPC handlers, so they see the address.
	addr := h.opts.Addrs.FromHTTP(r.RemoteAddr, r.Header.Values("X-Forwarded-For"))
	r = r.WithContext(clientaddr.NewContext(r.Context(), addr))
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
	case "/openapi.json", "/docs": // the API's description is public, as the source is
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			apidoc.Serve(w, r)
			return
		}
	}
	// 1. Gateway token. EventSource and WebSocket cannot send headers: the stream routes also
	// take the credential as ?auth=<token> (or "Bearer <token>", URL-encoded).
	if r.Header.Get("Authorization") == "" && (r.URL.Path == "/device/stream" || r.URL.Path == "/device/ws") {
		if a := r.URL.Query().Get("auth"); a != "" {
			if !strings.HasPrefix(a, "Bearer ") {
				a = "Bearer " + a
			}
			r.Header.Set("Authorization", a)
		}
	}
	if !h.opts.Token.Check(r.Header.Get("Authorization")) {
		writeError(w, apierr.New("authentication_failed", "authentication failed: send Authorization: Bearer <token>"))
		return
	}
	if h.opts.Gate != nil { // hosted mode: the admin token, a tenant's key, or a device key
		ctx, err := h.opts.Gate.Authenticate(r.Context(), tenants.PathClass(r.URL.Path), r.Header.Get("Authorization"))
		if err != nil {
			writeError(w, apierr.FromError(err))
			return
		}
		r = r.WithContext(ctx)
	}
	switch r.URL.Path {
	case "/device/stream":
		h.sse(w, r)
		return
	case "/device/ws":
		h.ws(w, r)
		return
	case "/metrics":
		if h.opts.Metrics != nil && r.Method == http.MethodGet {
			h.opts.Metrics.ServeHTTP(w, r)
			return
		}
	}
	dw := h.armWriteDeadline(w)
	w = dw
	if hold := h.opts.Hold; hold != nil && !addr.Proxied && !addr.Exempt {
		if hold.Wait(r.Context()) != nil {
			return // the client went away while held
		}
		defer func() {
			// Only the client's own excess (429); a 503 is the server's trouble, and its
			// retries are what the caller is asked for.
			if s := w.Header().Get("Retry-After"); s != "" && dw.status == http.StatusTooManyRequests {
				if n, err := strconv.Atoi(s); err == nil {
					hold.Told(r.Context(), time.Duration(n)*time.Second)
				}
			}
		}()
	}
	// 2. Body size.
	if r.ContentLength > MaxBody {
		writeError(w, apierr.Newf("payload_too_large", "request body exceeds %d bytes", MaxBody))
		return
	}
	body, err := h.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	r.URL.Path, body = unalias(r.URL.Path, body)
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

// tracerScope is ingest's instrumentation scope.
const tracerScope = "pushgo/ingest"

// routeLabel is the route label of a request's metrics: the path of a known route, "other"
// for the rest (a label per unknown path would let clients grow the metrics without bound).
func (h *handler) routeLabel(path string) string {
	if _, ok := h.routes[path]; ok {
		return path
	}
	switch path {
	case "/healthz", "/readyz", "/metrics", "/openapi.json", "/docs":
		return path
	}
	return "other"
}

// statusWriter keeps the status code of an answer for its metrics.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (write deadlines).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) code() int { return cmp.Or(s.status, http.StatusOK) }

// readBody reads the whole body within BodyTimeout and at most MaxBody bytes.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apierr.Error) {
	timeout := cmp.Or(h.opts.BodyTimeout, DefaultBodyTimeout)
	rc := http.NewResponseController(w)
	// Errors mean the connection cannot take deadlines (HTTP/2 before Go 1.20 behaved so; a
	// test recorder): the body is then read without one.
	_ = rc.SetReadDeadline(time.Now().Add(timeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err == nil {
		// The deadline must not outlive the read: net/http keeps reading the connection in
		// the background while the handler runs, and a timeout there would cancel the request.
		_ = rc.SetReadDeadline(time.Time{})
		return body, nil
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return nil, apierr.Newf("payload_too_large", "request body exceeds %d bytes", MaxBody)
	}
	// The rest of the body is not wanted: "Connection: close" keeps net/http from draining it
	// before the answer, and the deadline left in the past makes its drain after the handler
	// fail at once, so the connection closes instead of waiting on the very client that is too
	// slow.
	w.Header().Set("Connection", "close")
	_ = rc.SetReadDeadline(time.Now())
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return nil, apierr.Newf("request_timeout", "the request body did not arrive within %s", timeout)
	}
	return nil, apierr.New("invalid_json_syntax", "could not read the request body")
}

// armWriteDeadline returns w with a write deadline of WriteTimeout set when the answer's first
// byte is written.
func (h *handler) armWriteDeadline(w http.ResponseWriter) *deadlineWriter {
	return &deadlineWriter{ResponseWriter: w, timeout: cmp.Or(h.opts.WriteTimeout, DefaultWriteTimeout)}
}

// deadlineWriter sets a write deadline on the connection before the first write of an answer,
// and keeps the answer's status.
type deadlineWriter struct {
	http.ResponseWriter
	timeout time.Duration
	armed   bool
	status  int
}

func (d *deadlineWriter) arm() {
	if !d.armed {
		d.armed = true
		_ = http.NewResponseController(d.ResponseWriter).SetWriteDeadline(time.Now().Add(d.timeout))
	}
}

func (d *deadlineWriter) WriteHeader(code int) {
	d.arm()
	if d.status == 0 {
		d.status = code
	}
	d.ResponseWriter.WriteHeader(code)
}

func (d *deadlineWriter) Write(b []byte) (int, error) { d.arm(); return d.ResponseWriter.Write(b) }

// Unwrap lets http.ResponseController reach the connection's writer.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

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
