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
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/proto/secretbox"
	"pushgo.dev/gateway/proto/webhook"
	"pushgo.dev/gateway/services/ingest/internal/attempts"
	"pushgo.dev/gateway/services/ingest/internal/auth"
	"pushgo.dev/gateway/services/ingest/internal/channels"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
	"pushgo.dev/gateway/services/ingest/internal/cors"
	"pushgo.dev/gateway/services/ingest/internal/createlimit"
	"pushgo.dev/gateway/services/ingest/internal/devices"
	"pushgo.dev/gateway/services/ingest/internal/grpcapi"
	"pushgo.dev/gateway/services/ingest/internal/hashpool"
	"pushgo.dev/gateway/services/ingest/internal/hooklog"
	"pushgo.dev/gateway/services/ingest/internal/httpapi"
	"pushgo.dev/gateway/services/ingest/internal/inbox"
	"pushgo.dev/gateway/services/ingest/internal/opgate"
	"pushgo.dev/gateway/services/ingest/internal/ops"
	"pushgo.dev/gateway/services/ingest/internal/quota"
	"pushgo.dev/gateway/services/ingest/internal/ratelimit"
	"pushgo.dev/gateway/services/ingest/internal/reader"
	"pushgo.dev/gateway/services/ingest/internal/retryhold"
	"pushgo.dev/gateway/services/ingest/internal/streamlimit"
	"pushgo.dev/gateway/services/ingest/internal/tenants"
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
	// DefaultBodyTimeout bounds receiving a request body (DESIGN.md §8.3: a body sent at
	// 1 byte/s is cut within ~10 s).
	DefaultBodyTimeout = httpapi.DefaultBodyTimeout
	// DefaultChannelOpsPerSecond, DefaultTenantOpsPerSecond and DefaultSubscribersPerChannel
	// are the limits of DESIGN.md §8.2 for a public gateway (the flags' defaults).
	DefaultChannelOpsPerSecond   = 100
	DefaultTenantOpsPerSecond    = 1000
	DefaultSubscribersPerChannel = 10000
	// DefaultHashConcurrency bounds the argon2id computations in flight (DESIGN.md §8.2: any
	// number of concurrent wrong passwords raises RSS by at most ~300 MB). Each holds 19 MiB
	// live, and the Go heap grows to about twice its live size before a collection, so one slot
	// costs up to ~40 MB: 4 slots ≈ 160 MB, leaving room for fragmentation and for the memory
	// Go hands back to the OS only slowly. More slots than cores would not hash faster.
	DefaultHashConcurrency = 4
	// DefaultPasswordFailuresPerMinute is the budget of password checks per channel × client
	// address before the lockouts start (DESIGN.md §8.2).
	DefaultPasswordFailuresPerMinute = 10
	// DefaultCreatesPerMinute is the budget of channel and device creates per client address
	// (DESIGN.md §8.2).
	DefaultCreatesPerMinute = 60
	// DefaultRetryHold is the longest a request that ignores a Retry-After is held.
	DefaultRetryHold = retryhold.DefaultMax
	// DefaultChannelConcurrency is how many event ops of one channel run at once on one
	// instance (package opgate); more wait their turn. One keeps a channel spending its burst
	// from crowding out the others (two still let a 10× flooder raise the others' p99 by
	// 34–95 %, docs/benchmarks.md), and a channel still gets ~1/latency ops per second, more
	// than its default rate limit, or at the least one per opgate.DefaultLease (50/s) when
	// its ops wait on a slow webhook.
	DefaultChannelConcurrency = 1
	// DefaultStreamsPerDevice and DefaultStreamsPerTenant bound live streams (DESIGN.md §8.2):
	// a phone, a desktop and a few tabs per device; a hosted tenant's whole fleet.
	DefaultStreamsPerDevice = 8
	DefaultStreamsPerTenant = 10000
	// DefaultStreamWriteTimeout bounds each write to a stream and each wait for a WebSocket
	// pong: a client that stops reading is dropped after it.
	DefaultStreamWriteTimeout = 10 * time.Second
)

// Defaults of hosted mode (DESIGN.md §8.2): the quotas of a tenant without overrides, room for
// a large customer and a bound on what one API key can make the broker store.
const (
	DefaultChannelsPerTenant = 1000
	DefaultDevicesPerTenant  = 100_000
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
	Token string
	// NoMetricsRoute leaves GET /metrics off the API listener (the metrics are served
	// elsewhere: pushgo's --metrics-addr).
	NoMetricsRoute bool
	DispatchWait   time.Duration
	RetryBudget    time.Duration
	ShutdownGrace  time.Duration
	// WebhookAllowPrivate accepts webhook URLs on loopback and private networks.
	WebhookAllowPrivate bool
	// StreamKeepAlive is the keep-alive interval of idle SSE and WebSocket streams.
	StreamKeepAlive time.Duration
	// BodyTimeout bounds reading a request's whole body (httpapi.DefaultBodyTimeout when 0);
	// WriteTimeout bounds writing an answer from its first byte (httpapi.DefaultWriteTimeout).
	BodyTimeout, WriteTimeout time.Duration
	// StreamsPerDevice and StreamsPerTenant are the most live streams (SSE and WebSocket) of
	// one device and of one tenant's devices, counted over every ingest instance on this NATS
	// (internal/streamlimit); 0 is no limit.
	StreamsPerDevice int
	StreamsPerTenant int
	// StreamWriteTimeout bounds each write to a stream (DefaultStreamWriteTimeout when 0).
	StreamWriteTimeout time.Duration
	// Bus sizes the streams and buckets this instance provisions at start.
	Bus bus.Options
	// Secrets seals the webhook secrets this instance stores (DESIGN.md §9.3), and seals again
	// those stored in clear or with an old key; nil stores them in clear, with a warning at
	// start.
	Secrets *secretbox.Box
	// ChannelOpsPerSecond and TenantOpsPerSecond limit event ops (create, update, close) per
	// channel and per tenant, in ops per second with a burst of 2 s worth, shared by every
	// ingest instance on the same NATS; 0 is no limit. SubscribersPerChannel is the quota of
	// devices subscribed to one channel; 0 is none.
	ChannelOpsPerSecond   float64
	TenantOpsPerSecond    float64
	SubscribersPerChannel int

	// Hostile-client limits (DESIGN.md §8.2). 0 turns a limit off; the zero Config has none,
	// the flags of cmd/pushgo default to the Default* constants.

	// HashConcurrency is the most password hashes computed at once; a check that waits more
	// than 1 s for a slot is answered 503 busy.
	HashConcurrency int
	// PasswordFailuresPerMinute is the budget of password checks per channel × client address,
	// then 429 too_many_attempts for lockouts that double while they come in a row (1 min up
	// to 1 h).
	PasswordFailuresPerMinute int
	// CreatesPerMinute is the budget of channel and device creates per client address, then
	// 429 rate_limited.
	CreatesPerMinute int
	// TrustedProxies (comma-separated CIDRs) are the peers whose X-Forwarded-For names the
	// client; LimitExempt (CIDRs) are clients the per-address limits skip.
	TrustedProxies, LimitExempt string
	// CORSOrigins (comma-separated scheme://host[:port], or "*") are the origins whose browser
	// pages may call the API (package cors); "" allows none.
	CORSOrigins string
	// LogPublicKeys (comma-separated files) verify the event log before get, history and list
	// answer from it (proto/logsign). Without them nothing is checked (a warning at start).
	LogPublicKeys string
	// RetryHold is the longest a direct client's request is held when it comes back on a
	// connection before the Retry-After it was given there has passed (package retryhold);
	// 0 is never.
	RetryHold time.Duration
	// ChannelConcurrency is how many event ops of one channel this instance runs at once;
	// the others queue in arrival order (package opgate). 0 is no bound.
	ChannelConcurrency int

	// AdminToken, when set, makes this a hosted gateway (DESIGN.md §8.1): the admin routes
	// /admin/tenant/* take it as "Authorization: Bearer <admin token>", every other route but
	// the health checks and the device-keyed ones a tenant's API key. Not together with Token.
	AdminToken string
	// ChannelsPerTenant and DevicesPerTenant bound what a tenant without overrides may own in
	// hosted mode (403 quota_exceeded); 0 turns the quota off.
	ChannelsPerTenant, DevicesPerTenant int
}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	if c.DispatchWait < 0 || c.RetryBudget < 0 || c.ShutdownGrace < 0 || c.BodyTimeout < 0 || c.WriteTimeout < 0 ||
		c.StreamWriteTimeout < 0 || c.RetryHold < 0 {
		return errors.New("ingest: durations must not be negative")
	}
	if c.Token != "" && c.AdminToken != "" {
		return errors.New("ingest: --token (private mode) and --admin-token (hosted mode) exclude each other")
	}
	if c.ChannelsPerTenant < 0 || c.DevicesPerTenant < 0 {
		return errors.New("ingest: tenant quotas must not be negative")
	}
	if !(c.ChannelOpsPerSecond >= 0) || !(c.TenantOpsPerSecond >= 0) || c.SubscribersPerChannel < 0 ||
		c.HashConcurrency < 0 || c.PasswordFailuresPerMinute < 0 || c.CreatesPerMinute < 0 ||
		c.StreamsPerDevice < 0 || c.StreamsPerTenant < 0 || c.ChannelConcurrency < 0 {
		return errors.New("ingest: limits must not be negative (0 turns one off)")
	}
	if _, err := cors.Parse(c.CORSOrigins); err != nil {
		return fmt.Errorf("ingest: --cors-origins: %w", err)
	}
	_, err := c.addresses()
	return err
}

// addresses is the client-address resolver of the trusted-proxy and exempt lists.
func (c Config) addresses() (*clientaddr.Resolver, error) {
	trusted, err := clientaddr.ParsePrefixes(c.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("ingest: trusted proxies: %w", err)
	}
	exempt, err := clientaddr.ParsePrefixes(c.LimitExempt)
	if err != nil {
		return nil, fmt.Errorf("ingest: limit-exempt: %w", err)
	}
	return clientaddr.New(trusted, exempt), nil
}

// Limiter keeps token buckets by key. The per-address and per-channel limits count in it, so
// a Limiter shared by every ingest replica (over NATS) makes the limits hold across replicas.
type Limiter interface {
	// Allow takes one token from key's bucket (refilled at rate tokens per second, capacity burst) if
	// one is there; otherwise it reports how long until one will be.
	Allow(key string, rate, burst float64) (ok bool, retryAfter time.Duration)
	// Peek reports the same without taking a token.
	Peek(key string, rate, burst float64) (ok bool, retryAfter time.Duration)
	// Charge takes n tokens whatever is left; the bucket may go negative, which lengthens the wait.
	Charge(key string, rate, burst, n float64)
}

// Deps are what Run uses but does not own; Run closes the listeners, not the connection.
type Deps struct {
	NC     *nats.Conn
	Logger *slog.Logger
	// HTTPListener and GRPCListener, when set, are served instead of listening on the
	// configured addresses (tests pass ":0" listeners).
	HTTPListener net.Listener
	GRPCListener net.Listener
	// Limiter, when set, holds the limits' token buckets instead of the ones Run shares over
	// NATS with the other ingest instances.
	Limiter Limiter
	// LogMemo, when set, is shared with the other services of this process (pushgo serve):
	// entries lifecycle signed are accepted without verifying their signature again
	// (logsign.Memo).
	LogMemo *logsign.Memo
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
	if err := bus.ProvisionRole(ctx, js, cfg.Bus, bus.RoleIngest, log); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	addrs, err := cfg.addresses()
	if err != nil {
		return err
	}
	// One set of token buckets for every limit, shared with the other ingest instances on this
	// NATS (each announces what it took), so the limits hold across replicas.
	limiter, err := ratelimit.New(deps.NC, log, ratelimit.Options{})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer func() { _ = limiter.Close() }()
	var lim Limiter = limiter
	if deps.Limiter != nil {
		lim = deps.Limiter
	}
	creates := createlimit.New(lim, cfg.CreatesPerMinute)
	chans, err := channels.New(ctx, js, budget, log, channels.Guards{
		Hashes:   hashpool.New(cfg.HashConcurrency, hashpool.DefaultWait),
		Attempts: attempts.New(lim, cfg.PasswordFailuresPerMinute, nil),
		Creates:  creates,
	})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	sub, err := ops.New(ctx, deps.NC, js, ops.Config{DispatchWait: cmp.Or(cfg.DispatchWait, DefaultDispatchWait), RetryBudget: budget,
		Layout: cfg.Bus.Layout()}, log)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer func() { _ = sub.Close() }()

	devs, err := devices.New(ctx, js, chans, webhook.URLPolicy{AllowPrivate: cfg.WebhookAllowPrivate}, budget, log, creates, cfg.Secrets)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	if cfg.Secrets == nil {
		log.Warn("no --secrets-key-file: webhook secrets are stored in clear in KV " + bus.BucketDevices)
	} else {
		// Devices stored before the key (or under an old key) are sealed with it now, in the
		// background; a request reading one first seals it itself.
		resealCtx, stopReseal := context.WithCancel(context.WithoutCancel(ctx))
		resealDone := make(chan struct{})
		go func() {
			defer close(resealDone)
			sealed, left, err := devs.Reseal(resealCtx)
			switch {
			case err != nil && resealCtx.Err() == nil:
				log.Warn("sealing stored webhook secrets stopped; requests reading a device still seal it", "sealed", sealed, "err", err)
			case err == nil:
				log.Info("stored webhook secrets checked", "key_id", cfg.Secrets.CurrentKeyID(), "sealed", sealed, "left", left)
			}
		}()
		defer func() { stopReseal(); <-resealDone }()
	}
	box, err := inbox.New(ctx, deps.NC, js, inbox.Options{Resync: cfg.StreamKeepAlive})
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	subQuota, err := quota.NewSubscribers(ctx, deps.NC, js, cfg.SubscribersPerChannel, budget, log)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	devs.Quota = subQuota
	opLimits := &ratelimit.EventOps{Buckets: lim, ChannelPerSecond: cfg.ChannelOpsPerSecond, TenantPerSecond: cfg.TenantOpsPerSecond}

	// Live streams of all ingest instances; Count(tenant) is the tenant's current streams.
	slCfg := streamlimit.Config{PerDevice: cfg.StreamsPerDevice, PerTenant: cfg.StreamsPerTenant}
	var streamLimit *streamlimit.Limiter

	// Hosted mode: tenants, their keys, quotas and usage (internal/tenants). A tenant's limits
	// are its overrides, else the flags; the limiters read them from the request's context.
	var gate *tenants.Gate
	var tenantStore *tenants.Store
	if cfg.AdminToken != "" {
		bg, stopBg := context.WithCancel(context.WithoutCancel(ctx))
		defer stopBg()
		if tenantStore, err = tenants.New(bg, js, tenants.Config{
			Defaults: tenants.Limits{Channels: cfg.ChannelsPerTenant, Devices: cfg.DevicesPerTenant,
				OpsPerSecond: int(cfg.TenantOpsPerSecond), Streams: cfg.StreamsPerTenant, SubscribersPerChannel: cfg.SubscribersPerChannel},
			Streams:     func(id string) int { return streamLimit.Count(id) },
			RetryBudget: budget,
		}, log); err != nil {
			return fmt.Errorf("ingest: %w", err)
		}
		slCfg.TenantLimit = tenantStore.StreamLimit
		opLimits.Tenant = func(ctx context.Context) (string, float64, bool) {
			t, ok := tenants.FromContext(ctx)
			return t.ID, offIfZero(float64(t.Limits.OpsPerSecond)), ok
		}
		subQuota.Limit = func(ctx context.Context) (int, bool) {
			t, ok := tenants.FromContext(ctx)
			return int(offIfZero(float64(t.Limits.SubscribersPerChannel))), ok
		}
		gate = tenants.NewGate(cfg.AdminToken, tenantStore)
		usageCtx, stopUsage := context.WithCancel(bg)
		usageDone := make(chan struct{})
		go func() { tenantStore.RunUsage(usageCtx); close(usageDone) }()
		defer func() { stopUsage(); <-usageDone }() // after the servers: the last ops are counted
	}

	token := auth.NewToken(cfg.Token)
	interceptor := grpcapi.Interceptor(token, addrs, log)
	if gate != nil {
		interceptor = grpcapi.Chain(interceptor, grpcapi.TenantGate(gate))
	}
	grpcServer := grpc.NewServer(grpc.UnaryInterceptor(interceptor),
		// A client must finish the connection handshake in 10 s, and idle connections are
		// closed after 2 minutes, as on the HTTP listener.
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: 2 * time.Minute}))
	// Shared with the other ingest instances on this NATS (each announces its counts), so the
	// stream limits hold across replicas.
	if streamLimit, err = streamlimit.NewShared(deps.NC, log, slCfg, streamlimit.Options{}); err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	defer func() { _ = streamLimit.Close() }()
	inline := grpcapi.NewInline(interceptor)
	_, verifier, err := logsign.Load("", cfg.LogPublicKeys)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	verifier.SetDirect(cfg.Bus.Replicas <= 1) // an R1 log's only replica is its leader
	verifier.SetMemo(deps.LogMemo)
	if verifier == nil {
		log.Warn("no log public keys (--log-public-keys): the event log is answered from unchecked")
	} else {
		for _, stream := range cfg.Bus.Layout().EventsStreams() {
			if err := verifier.FollowHorizon(ctx, js, stream, log); err != nil {
				return fmt.Errorf("ingest: %w", err)
			}
		}
	}
	events := &grpcapi.Events{Channels: chans, Ops: sub, Reader: reader.New(deps.NC, js, verifier, cfg.Bus.Layout(), log), Limits: opLimits,
		Turns: opgate.New(cfg.ChannelConcurrency, 0)}
	channelsAPI := &grpcapi.Channels{Store: chans, Devices: devs}
	devicesAPI := &grpcapi.Devices{Store: devs, Hooks: hooklog.New(deps.NC)}
	messagesAPI := &grpcapi.Messages{Devices: devs, Inbox: box}
	for _, reg := range []grpc.ServiceRegistrar{grpcServer, inline} {
		apiv1.RegisterEventServiceServer(reg, events)
		apiv1.RegisterChannelServiceServer(reg, channelsAPI)
		apiv1.RegisterDeviceServiceServer(reg, devicesAPI)
		apiv1.RegisterMessageServiceServer(reg, messagesAPI)
		apiv1.RegisterActivityServiceServer(reg, &grpcapi.Activities{Devices: devs})
		if tenantStore != nil {
			apiv1.RegisterTenantServiceServer(reg, &grpcapi.Tenants{Store: tenantStore})
		}
	}
	// The standard health service and server reflection, on the gRPC listener only: stock tools
	// (grpcurl, grpc_health_probe) need neither our .proto files nor a token for them.
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(grpcServer, healthSrv)
	reflection.Register(grpcServer)
	isReady := ready(deps.NC, js, cfg.Bus.Layout())
	healthCtx, stopHealth := context.WithCancel(ctx)
	healthDone := make(chan struct{})
	go func() { followHealth(healthCtx, healthSrv, isReady); close(healthDone) }()
	defer func() { stopHealth(); <-healthDone }()
	corsPolicy, _ := cors.Parse(cfg.CORSOrigins) // checked by Validate
	var metricsRoute http.Handler
	if !cfg.NoMetricsRoute {
		metricsRoute = metrics.Handler()
	}
	// The inbox depth of all devices, read from the broker on each scrape.
	if st, err := js.Stream(ctx, bus.StreamInbox); err == nil {
		defer metrics.WatchBroker(nil, []jetstream.Stream{st})()
	}
	streamsDone := make(chan struct{})
	var hold *retryhold.Holder
	if cfg.RetryHold > 0 {
		hold = retryhold.New(cfg.RetryHold)
	}
	handler, err := httpapi.New(ctx, inline, httpapi.Options{
		Token: token, Gate: gate, Ready: isReady, Logger: log,
		Streams:   streams{devs, box, streamLimit},
		KeepAlive: cfg.StreamKeepAlive, StreamWriteTimeout: cmp.Or(cfg.StreamWriteTimeout, DefaultStreamWriteTimeout), Done: streamsDone, Addrs: addrs,
		BodyTimeout: cfg.BodyTimeout, WriteTimeout: cfg.WriteTimeout, Hold: hold,
		Metrics: metricsRoute, CORS: corsPolicy,
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
	// Headers and idle keep-alive connections are bounded here; bodies and answers per request in
	// httpapi (a server-wide ReadTimeout/WriteTimeout would also cut the live streams).
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ConnContext: retryhold.ConnContext}
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

// ErrorCodeTrailer is the gRPC trailer that carries a failed call's error_code, beside the
// status's ErrorInfo detail (whose reason is the same code).
const ErrorCodeTrailer = grpcapi.ErrorCodeTrailer

// healthEvery is how often the gRPC health status is brought in line with readiness.
const healthEvery = 2 * time.Second

// followHealth sets the gRPC health status of the server ("") and of every API service from
// ready (what /readyz answers) every healthEvery, until ctx is done; then NOT_SERVING.
func followHealth(ctx context.Context, srv *health.Server, ready func(context.Context) error) {
	services := []string{"", apiv1.EventService_ServiceDesc.ServiceName, apiv1.ChannelService_ServiceDesc.ServiceName,
		apiv1.DeviceService_ServiceDesc.ServiceName, apiv1.MessageService_ServiceDesc.ServiceName, apiv1.ActivityService_ServiceDesc.ServiceName}
	set := func(st healthpb.HealthCheckResponse_ServingStatus) {
		for _, s := range services {
			srv.SetServingStatus(s, st)
		}
	}
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, healthEvery)
		st := healthpb.HealthCheckResponse_SERVING
		if ready(rctx) != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		cancel()
		set(st)
		select {
		case <-ctx.Done():
			srv.Shutdown() // NOT_SERVING for everything from now on
			return
		case <-t.C:
		}
	}
}

// streams serves the live inbox routes from the device store and the inbox, within the
// stream limits.
type streams struct {
	*devices.Store
	*inbox.Inbox
	limit *streamlimit.Limiter
}

// Open checks the device and admits one more live stream of it, within its own limit and its
// tenant's (hosted mode).
func (s streams) Open(ctx context.Context, deviceKey string) (func(), error) {
	owner, err := s.Owner(ctx, deviceKey)
	if err != nil {
		return nil, err
	}
	t, _, err := tenants.OwnerTenant(ctx, owner)
	if err != nil {
		return nil, err
	}
	return s.limit.Acquire(deviceKey, t.ID) // "" outside hosted mode: no tenant limit
}

// offIfZero maps a tenant's effective limit, where 0 is "none", to the limiters' convention,
// where 0 is "the flag's default" and a negative value "none".
func offIfZero(v float64) float64 {
	if v == 0 {
		return -1
	}
	return v
}

// ready checks that the broker is connected and the streams exist.
// ready checks that the broker is connected, every partition's streams exist, and the store
// was made with this instance's partition count (checked until it once holds: a store keeps
// its count).
func ready(nc *nats.Conn, js jetstream.JetStream, l bus.Layout) func(context.Context) error {
	var counted atomic.Bool
	return func(ctx context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected to NATS")
		}
		for _, s := range slices.Concat(l.CommandsStreams(), l.EventsStreams()) {
			if _, err := js.Stream(ctx, s); err != nil {
				return fmt.Errorf("stream %s: %w", s, err)
			}
		}
		if !counted.Load() {
			if err := bus.CheckPartitions(ctx, js, l); err != nil {
				return err
			}
			counted.Store(true)
		}
		return nil
	}
}
