package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/sync/errgroup"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/proto/tracing"
	"pushgo.dev/gateway/services/dispatch"
	"pushgo.dev/gateway/services/ingest"
	"pushgo.dev/gateway/services/lifecycle"
)

// run starts what cfg.command names and returns when ctx is done and it has stopped.
func run(ctx context.Context, cfg config) error {
	if cfg.command == "healthcheck" {
		return healthcheck(ctx, cfg.checkURL)
	}
	log, err := cfg.logger(os.Stderr)
	if err != nil {
		return err
	}
	if cfg.pprofAddr != "" {
		stop, err := servePprof(cfg.pprofAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if cfg.metricsAddr != "" {
		stop, err := serveMetrics(cfg.metricsAddr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	// Traces when the OTEL_* variables name an OTLP endpoint; nothing, at no cost, otherwise.
	name := "pushgo"
	if cfg.command != "serve" {
		name += "-" + cfg.command
	}
	shutdownTracing, err := tracing.Setup(ctx, name)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			log.Warn("flushing traces", "err", err)
		}
	}()
	go releaseMemory(ctx, log)
	if cfg, err = withSecrets(cfg, log); err != nil {
		return err
	}
	if cfg.command == "serve" {
		return serve(ctx, cfg, log)
	}
	nc, err := connect(cfg, log)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	switch cfg.command {
	case "ingest":
		return ingest.Run(ctx, cfg.ingest, ingest.Deps{NC: nc, Logger: log})
	case "lifecycle":
		return lifecycle.Run(ctx, cfg.lifecycle, lifecycle.Deps{NC: nc, Logger: log})
	case "dispatch":
		return dispatch.Run(ctx, cfg.dispatch, dispatch.Deps{NC: nc, Logger: log})
	}
	return fmt.Errorf("unknown command %q", cfg.command)
}

// connect dials an external NATS as the service's own user and keeps reconnecting for ever: a
// service outlives broker restarts. Pings every 2 s find a server cut off by the network within
// ~6 s (the default, 2 minutes × 2, would leave the service talking to a dead socket for 4
// minutes). Replies come under the role's inbox prefix, the only one its user may subscribe to.
func connect(cfg config, log *slog.Logger) (*nats.Conn, error) {
	name := "pushgo-" + cfg.command
	role := bus.Role(cfg.command)
	opts := []nats.Option{
		nats.Name(name),
		nats.CustomInboxPrefix(bus.InboxPrefix(role)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(3),
		nats.Timeout(2 * time.Second),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", "err", err) }),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(natsErrors(log, cfg.command)),
	}
	if cfg.natsPasswordFile != "" {
		b, err := os.ReadFile(cfg.natsPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--nats-password-file: %w", err)
		}
		pw := strings.TrimSpace(string(b))
		if pw == "" {
			return nil, fmt.Errorf("--nats-password-file: %s is empty", cfg.natsPasswordFile)
		}
		opts = append(opts, nats.UserInfo(cmp.Or(cfg.natsUser, cfg.command), pw))
	}
	if cfg.natsCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.natsCAFile))
	}
	nc, err := nats.Connect(cfg.natsURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", cfg.natsURL, err)
	}
	return nc, nil
}

// natsErrors logs the asynchronous errors the broker reports to a connection. A permission
// violation means the permission table (bus.Table) lacks something the service does, or the
// broker runs another table: an error worth an operator's look.
func natsErrors(log *slog.Logger, svc string) nats.ErrHandler {
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		attrs := []any{"service", svc, "err", err}
		if sub != nil {
			attrs = append(attrs, "subject", sub.Subject)
		}
		if errors.Is(err, nats.ErrPermissionViolation) {
			log.Error("NATS permission violation", attrs...)
			return
		}
		log.Warn("NATS error", attrs...)
	}
}

// startAll runs ingest until ctx is done, and lifecycle and dispatch until ingest has stopped,
// so that requests in flight at shutdown still get their outcomes.
// The API listens on httpLn when it is set, else on the configured address.
func startAll(ctx context.Context, cfg config, log *slog.Logger, httpLn net.Listener, conns func(string) (*nats.Conn, error)) error {
	backendCtx, stopBackend := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackend()
	ncs := map[string]*nats.Conn{}
	for _, svc := range []string{"ingest", "lifecycle", "dispatch"} {
		nc, err := conns(svc)
		if err != nil {
			return err
		}
		defer func() { _ = nc.Drain() }()
		ncs[svc] = nc
	}
	g, gctx := errgroup.WithContext(backendCtx)
	// The one lifecycle instance of serve appends every event, so its heads can be remembered,
	// and the readers of this process need not verify the signatures it made again.
	cfg.lifecycle.CacheHeads = true
	memo := logsign.NewMemo(0)
	g.Go(func() error {
		return lifecycle.Run(gctx, cfg.lifecycle, lifecycle.Deps{NC: ncs["lifecycle"], Logger: log, LogMemo: memo})
	})
	g.Go(func() error {
		return dispatch.Run(gctx, cfg.dispatch, dispatch.Deps{NC: ncs["dispatch"], Logger: log, LogMemo: memo})
	})
	g.Go(func() error {
		// ingest stops on the caller's signal or when a backend service failed.
		ictx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-gctx.Done():
				cancel()
			case <-ictx.Done():
			}
		}()
		err := ingest.Run(ictx, cfg.ingest, ingest.Deps{NC: ncs["ingest"], Logger: log, HTTPListener: httpLn, LogMemo: memo})
		stopBackend()
		return err
	})
	return g.Wait()
}

// servePprof serves the Go runtime profiles on addr until stop is called.
func servePprof(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("profiles served", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// serveMetrics serves GET /metrics on addr until stop is called.
func serveMetrics(addr string, log *slog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("metrics served", "addr", ln.Addr().String())
	return func() { _ = srv.Close() }, nil
}

// healthcheck is the container health probe: GET /healthz on the local API.
func healthcheck(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := addr
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthz answered %s", resp.Status)
	}
	return nil
}
