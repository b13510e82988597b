package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// serve runs every service with an embedded JetStream server whose store is under the data
// directory. The server has no network listener unless --nats-listen asks for one; the
// services reach it in process.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	if err := cfg.ensureLogKeys(filepath.Join(cfg.dataDir, "keys")); err != nil {
		return err
	}
	opts := &server.Options{
		ServerName: "pushgo",
		JetStream:  true,
		StoreDir:   filepath.Join(cfg.dataDir, "jetstream"),
		NoSigs:     true, // this process owns the signals
		NoLog:      true,
		DontListen: cfg.natsListen == "",
	}
	if cfg.natsListen != "" {
		host, port, err := net.SplitHostPort(cfg.natsListen)
		if err != nil {
			return fmt.Errorf("--nats-listen: %w", err)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return fmt.Errorf("--nats-listen: bad port %q", port)
		}
		opts.Host = host
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(30 * time.Second) {
		return errors.New("embedded NATS did not become ready in 30s")
	}
	log.Info("embedded JetStream ready", "store", opts.StoreDir, "listen", cfg.natsListen)
	return startAll(ctx, cfg, log, nil, func(svc string) (*nats.Conn, error) {
		return nats.Connect("", nats.Name("pushgo-"+svc), nats.InProcessServer(ns))
	})
}
