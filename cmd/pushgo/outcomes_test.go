package main

import (
	"context"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"pushgo.dev/gateway/proto/bus/bustest"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/dispatch"
	"pushgo.dev/gateway/services/ingest"
	"pushgo.dev/gateway/services/lifecycle"
)

// runService runs f until the returned stop is called (or the test ends) and checks it
// returned cleanly.
func runService(t *testing.T, f func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- f(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("service stopped with %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func conn(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// runIngest runs ingest against the NATS server at url on a fresh loopback listener (and on
// grpcLn when set) and returns a client of it.
func runIngest(t *testing.T, url string, cfg ingest.Config, grpcLn net.Listener) *gateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runService(t, func(ctx context.Context) error {
		return ingest.Run(ctx, cfg, ingest.Deps{NC: conn(t, url), Logger: quiet, HTTPListener: ln, GRPCListener: grpcLn})
	})
	return &gateway{url: "http://" + ln.Addr().String()}
}

func runLifecycle(t *testing.T, url string) {
	t.Helper()
	runService(t, func(ctx context.Context) error {
		return lifecycle.Run(ctx, lifecycle.Config{}, lifecycle.Deps{NC: conn(t, url), Logger: quiet})
	})
}

// runDispatch runs a dispatch instance on nc (a new connection when nil) until stop.
func runDispatch(t *testing.T, url string, cfg dispatch.Config, nc *nats.Conn) (stop func()) {
	t.Helper()
	if nc == nil {
		nc = conn(t, url)
	}
	return runService(t, func(ctx context.Context) error {
		return dispatch.Run(ctx, cfg, dispatch.Deps{NC: nc, Logger: quiet})
	})
}

// TestDispatchTimeoutThenFinalOutcome runs ingest and lifecycle without dispatch: the op is
// accepted and stored but its delivery cannot finish, so the caller gets 503 dispatch_timeout
// with the event_id; once dispatch runs, a repeat of the op_id returns the final outcome.
func TestDispatchTimeoutThenFinalOutcome(t *testing.T) {
	t.Parallel()
	ns := bustest.RunServer(t)
	g := runIngest(t, ns.ClientURL(), ingest.Config{DispatchWait: 300 * time.Millisecond, RetryBudget: time.Second}, nil)
	runLifecycle(t, ns.ClientURL())
	g.waitReady(t)
	ch := g.channel(t)

	body := createBody(ch, obj{"op_id": "slow-1"})
	r := g.post(t, "/event/create", body)
	if r.status != http.StatusServiceUnavailable || r.code() != "dispatch_timeout" {
		t.Fatalf("without dispatch: %d %s", r.status, r.raw)
	}
	ev := r.data(t)["event_id"].(string)
	if len(ev) != 32 || r.data(t)["accepted"] != false {
		t.Fatalf("dispatch_timeout data = %s", r.env.Data)
	}
	// The op is in the event store although its outcome is pending.
	if st := g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev}); st["version"] != 1.0 {
		t.Fatalf("stored state = %v", st)
	}

	runDispatch(t, ns.ClientURL(), dispatch.Config{}, nil)
	var final response
	eventually(t, 10*time.Second, "the final outcome", func() bool {
		final = g.post(t, "/event/create", body)
		return final.status == http.StatusOK
	})
	if d := final.data(t); d["event_id"] != ev || d["version"] != 1.0 || d["accepted"] != true {
		t.Fatalf("final outcome = %s", final.env.Data)
	}
	h := g.mustOK(t, "/event/history", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
	if n := len(h["entries"].([]any)); n != 1 {
		t.Fatalf("%d history entries after a timeout and repeats, want 1", n)
	}
}

// TestBrokerUnavailable stops the NATS server under a running gateway: event ops answer
// 503 unavailable with Retry-After within the retry budget, and work again once it is back.
func TestBrokerUnavailable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ns := bustest.RunServerAt(t, dir, -1)
	port := ns.Addr().(*net.TCPAddr).Port
	g := runIngest(t, ns.ClientURL(), ingest.Config{RetryBudget: 700 * time.Millisecond}, nil)
	runLifecycle(t, ns.ClientURL())
	runDispatch(t, ns.ClientURL(), dispatch.Config{}, nil)
	g.waitReady(t)
	ch := g.channel(t)
	g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "before"}))

	ns.Shutdown()
	ns.WaitForShutdown()
	body := createBody(ch, obj{"op_id": "during"})
	r := g.post(t, "/event/create", body)
	if r.status != http.StatusServiceUnavailable || r.code() != "unavailable" || r.header.Get("Retry-After") == "" {
		t.Fatalf("broker down: %d %s (Retry-After %q)", r.status, r.raw, r.header.Get("Retry-After"))
	}
	if r := g.request(t, "GET", "/readyz", "", nil, nil); r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz with the broker down: %d", r.status)
	}

	// Same store, same port: the clients reconnect and the retried op goes through once.
	bustest.RunServerAt(t, dir, port)
	var again response
	eventually(t, 20*time.Second, "the op after the broker is back", func() bool {
		again = g.post(t, "/event/create", body)
		return again.status == http.StatusOK
	})
	ev := again.data(t)["event_id"].(string)
	h := g.mustOK(t, "/event/history", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
	if n := len(h["entries"].([]any)); n != 1 {
		t.Fatalf("%d history entries, want 1", n)
	}
}

// TestGRPC drives the public gRPC API: same handlers, same error codes (as ErrorInfo reasons).
func TestGRPC(t *testing.T) {
	t.Parallel()
	ns := bustest.RunServer(t)
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runIngest(t, ns.ClientURL(), ingest.Config{Token: "tok"}, grpcLn)
	runLifecycle(t, ns.ClientURL())
	runDispatch(t, ns.ClientURL(), dispatch.Config{}, nil)
	cc, err := grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	chans, events := apiv1.NewChannelServiceClient(cc), apiv1.NewEventServiceClient(cc)

	reason := func(err error) string {
		for _, d := range status.Convert(err).Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				return info.GetReason()
			}
		}
		return ""
	}
	if _, err := chans.Create(t.Context(), &apiv1.CreateChannelRequest{ChannelName: "g", Password: "secret-123"}); status.Code(err) != codes.Unauthenticated || reason(err) != "authentication_failed" {
		t.Fatalf("no token: %v", err)
	}
	ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer tok")
	var created *apiv1.CreateChannelResponse
	eventually(t, 10*time.Second, "gRPC ready", func() bool {
		created, err = chans.Create(ctx, &apiv1.CreateChannelRequest{ChannelName: "g", Password: "secret-123"})
		return err == nil
	})
	req := &apiv1.EventRequest{ChannelId: created.GetChannelId(), Password: "secret-123", OpId: proto.String("g-1"),
		Title: "grpc", Status: "running", Message: "m", Severity: "HIGH", EventTime: structpb.NewNumberValue(1713750000)}
	res, err := events.Create(ctx, req)
	if err != nil || res.GetVersion() != 1 || res.GetEventState() != "ONGOING" || !res.GetAccepted() {
		t.Fatalf("create: %v %v", res, err)
	}
	st, err := events.Get(ctx, &apiv1.GetEventRequest{ChannelId: created.GetChannelId(), Password: "secret-123", EventId: res.GetEventId()})
	if err != nil || st.GetSeverity() != "high" || st.GetEventTime() != 1713750000000 {
		t.Fatalf("get: %v %v", st, err)
	}
	req.Title = "changed"
	if _, err := events.Create(ctx, req); status.Code(err) != codes.Aborted || reason(err) != "op_id_conflict" {
		t.Fatalf("conflicting replay: %v", err)
	}
	_, err = events.Update(ctx, &apiv1.EventRequest{ChannelId: created.GetChannelId(), Password: "secret-123", EventId: proto.String("nope"),
		Status: "s", Message: "m", Severity: "low", EventTime: structpb.NewNumberValue(1713750000)})
	if status.Code(err) != codes.NotFound || reason(err) != "event_not_found" {
		t.Fatalf("update of unknown event: %v", err)
	}
	var trailer metadata.MD
	if _, err := events.Create(ctx, &apiv1.EventRequest{}, grpc.Trailer(&trailer)); status.Code(err) != codes.InvalidArgument || reason(err) != "channel_id_required" {
		t.Fatalf("empty request: %v", err)
	}
	// The error code as a plain trailer too, for tools that do not decode the detail.
	if got := trailer.Get(ingest.ErrorCodeTrailer); len(got) != 1 || got[0] != "channel_id_required" {
		t.Fatalf("error code trailer = %v", trailer)
	}

	// The standard health service answers without the token once the gateway is ready.
	hc := healthpb.NewHealthClient(cc)
	eventually(t, 10*time.Second, "health SERVING", func() bool {
		r, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
	})
	if r, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "pushgo.api.v1.EventService"}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of EventService: %v %v", r, err)
	}
	if _, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("health of an unknown service: %v", err)
	}

	// Server reflection lists every service, so stock tools need no .proto files.
	stream, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, svc := range resp.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	for _, want := range []string{"pushgo.api.v1.EventService", "pushgo.api.v1.ChannelService", "pushgo.api.v1.DeviceService",
		"pushgo.api.v1.MessageService", "pushgo.api.v1.ActivityService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, not %s", names, want)
		}
	}
	_ = stream.CloseSend()
}
