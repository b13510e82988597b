// Package ingest is the ingest service: the only public HTTP surface. REST routes are served by
// grpc-gateway in front of the gRPC services (also served on their own listener), which
// authenticate, validate, authorise against the channel, record the op for idempotency,
// publish the command and answer with the op's outcome (DESIGN.md §1, §4–§6).
package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/proto/webhook"
	"pushgo.dev/gateway/services/ingest/internal/auth"
	"pushgo.dev/gateway/services/ingest/internal/channels"
	"pushgo.dev/gateway/services/ingest/internal/devices"
	"pushgo.dev/gateway/services/ingest/internal/grpcapi"
	"pushgo.dev/gateway/services/ingest/internal/httpapi"
	"pushgo.dev/gateway/services/ingest/internal/inbox"
	"pushgo.dev/gateway/services/ingest/internal/ops"
	"pushgo.dev/gateway/services/ingest/internal/reader"
	"pushgo.dev/gateway/services/ingest/internal/streamlimit"
)

// Defaults of Config.
const (
	DefaultHTTPAddr = "127.0.0.1:6666"
	DefaultGRPCAddr = "127.0.0.1:6667"
	// DefaultDispatchWait is how long a request waits for its op's delivery (DESIGN.md §5).
	DefaultDispatchWait = 5 * time.Second
	// DefaultRetryBudget outlasts a JetStream leader election (4–9 s measured) with margin.
	DefaultRetryBudget = 20 * time.Second
	// DefaultShutdownGrace is how long in-flight requests may finish after a stop; it fits the
	// 10 s in which `pushgo serve` must exit after SIGTERM.
	DefaultShutdownGrace = 7 * time.Second
	// DefaultStreamsPerDevice and DefaultStreamsPerTenant bound live streams (DESIGN.md §8.2):
	// a phone, a desktop and a few tabs per device; a hosted tenant's whole fleet.
	DefaultStreamsPerDevice = 8
	DefaultStreamsPerTenant = 10000
	// DefaultStreamWriteTimeout bounds each write to a stream and each wait for a WebSocket
	// pong: a client that stops reading is dropped after it.
	DefaultStreamWriteTimeout = 10 * time.Second
)

// Config configures one ingest instance.
type Config struct {
	// HTTPAddr is where the REST API listens (ignored when Deps.HTTPListener is set).
	HTTPAddr string
	// GRPCAddr is where the gRPC API listens; "" serves no gRPC listener (ignored when
	// Deps.GRPCListener is set).
	GRPCAddr string
	// Token, when set, is required as "Authorization: Bearer <token>" on every route but the
	// health checks.
	Token         string
	DispatchWait  time.Duration
	RetryBudget   time.Duration
	ShutdownGrace time.Duration
	// WebhookAllowPrivate accepts webhook URLs on loopback and private networks.
	WebhookAllowPrivate bool
	// StreamKeepAlive is the keep-alive interval of idle SSE and WebSocket streams.
	StreamKeepAlive time.Duration
	// StreamsPerDevice and StreamsPerTenant are the most live streams (SSE and WebSocket) of
	// one device and of one tenant's devices on this instance; 0 is no limit.
	StreamsPerDevice int
	StreamsPerTenant int
	// StreamWriteTimeout bounds each write to a stream (DefaultStreamWriteTimeout when 0).
	StreamWriteTimeout time.Duration
	// Bus sizes the streams and buckets this instance provisions at start.
	Bus bus.Options
}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	if c.DispatchWait < 0 || c.RetryBudget < 0 || c.ShutdownGrace < 0 || c.StreamWriteTimeout < 0 {
		return errors.New("ingest: durations must not be negative")
	}
	if c.StreamsPerDevice < 0 || c.StreamsPerTenant < 0 {
		return errors.New("ingest: stream limits must not be negative")
	}
	return nil
}

// Deps are what Run uses but does not own; Run closes the listeners, not the connection.
type Deps struct {
	NC     *nats.Conn
	Logger *slog.Logger
	// HTTPListener and GRPCListener, when set, are served instead of listening on the
	// configured addresses (tests pass ":0" listeners).
	HTTPListener net.Listener
	GRPCListener net.Listener
}

// Run serves the API until ctx is done, then stops taking requests and lets those in flight
// finish within the shutdown grace.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cmp.Or(deps.Logger, slog.Default()).With("service", "ingest")
	budget := cmp.Or(cfg.RetryBudget, DefaultRetryBudget)
	js, err := jetstream.New(deps.NC)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if err := bus.Provision(ctx, js, cfg.Bus); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	chans, err := channels.New(ctx, js, budget, log)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	sub, err := ops.New(ctx, deps.NC, js, ops.Config{DispatchWait: cmp.Or(cfg.DispatchWait, DefaultDispatchWait), RetryBudget: budget}, log)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer func() { _ = sub.Close() }()

	devs, err := devices.New(ctx, js, chans, webhook.URLPolicy{AllowPrivate: cfg.WebhookAllowPrivate}, budget, log)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	box, err := inbox.New(ctx, deps.NC, js, inbox.Options{Resync: cfg.StreamKeepAlive})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}

	token := auth.NewToken(cfg.Token)
	interceptor := grpcapi.Interceptor(token, log)
	grpcServer := grpc.NewServer(grpc.UnaryInterceptor(interceptor))
	inline := grpcapi.NewInline(interceptor)
	events := &grpcapi.Events{Channels: chans, Ops: sub, Reader: reader.New(deps.NC, js)}
	channelsAPI := &grpcapi.Channels{Store: chans, Devices: devs}
	devicesAPI := &grpcapi.Devices{Store: devs}
	messagesAPI := &grpcapi.Messages{Devices: devs, Inbox: box}
	for _, reg := range []grpc.ServiceRegistrar{grpcServer, inline} {
		apiv1.RegisterEventServiceServer(reg, events)
		apiv1.RegisterChannelServiceServer(reg, channelsAPI)
		apiv1.RegisterDeviceServiceServer(reg, devicesAPI)
		apiv1.RegisterMessageServiceServer(reg, messagesAPI)
	}
	streamsDone := make(chan struct{})
	// Live streams of this instance; Count(tenant) is the tenant's current streams.
	streamLimit := streamlimit.New(streamlimit.Config{PerDevice: cfg.StreamsPerDevice, PerTenant: cfg.StreamsPerTenant})
	handler, err := httpapi.New(ctx, inline, httpapi.Options{
		Token: token, Ready: ready(deps.NC, js), Logger: log,
		Streams:   streams{devs, box, streamLimit},
		KeepAlive: cfg.StreamKeepAlive, StreamWriteTimeout: cmp.Or(cfg.StreamWriteTimeout, DefaultStreamWriteTimeout), Done: streamsDone,
	})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}

	httpLn := deps.HTTPListener
	if httpLn == nil {
		if httpLn, err = net.Listen("tcp", cmp.Or(cfg.HTTPAddr, DefaultHTTPAddr)); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
	}
	grpcLn := deps.GRPCListener
	if grpcLn == nil && cfg.GRPCAddr != "" {
		if grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			_ = httpLn.Close()
			return fmt.Errorf("ingest: %w", err)
		}
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	grace := cmp.Or(cfg.ShutdownGrace, DefaultShutdownGrace)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		log.Info("HTTP API listening", "addr", httpLn.Addr().String())
		if err := srv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("ingest: http: %w", err)
		}
		return nil
	})
	if grpcLn != nil {
		g.Go(func() error {
			log.Info("gRPC API listening", "addr", grpcLn.Addr().String())
			return grpcServer.Serve(grpcLn)
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		close(streamsDone) // live streams end now; requests in flight get the grace
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
		defer cancel()
		stopped := make(chan struct{})
		go func() { grpcServer.GracefulStop(); close(stopped) }()
		err := srv.Shutdown(sctx)
		select {
		case <-stopped:
		case <-sctx.Done():
			grpcServer.Stop()
		}
		if err != nil {
			_ = srv.Close()
		}
		return nil
	})
	return g.Wait()
}

// streams serves the live inbox routes from the device store and the inbox, within the
// stream limits.
type streams struct {
	*devices.Store
	*inbox.Inbox
	limit *streamlimit.Limiter
}

// Open checks the device and admits one more live stream of it.
func (s streams) Open(ctx context.Context, deviceKey string) (func(), error) {
	if err := s.Check(ctx, deviceKey); err != nil {
		return nil, err
	}
	return s.limit.Acquire(deviceKey, "") // "": devices have no tenant until hosted mode
}

// ready checks that the broker is connected and the streams exist.
func ready(nc *nats.Conn, js jetstream.JetStream) func(context.Context) error {
	return func(ctx context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected to NATS")
		}
		for _, s := range []string{bus.StreamCommands, bus.StreamEvents} {
			if _, err := js.Stream(ctx, s); err != nil {
				return fmt.Errorf("stream %s: %w", s, err)
			}
		}
		return nil
	}
}
