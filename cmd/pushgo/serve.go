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

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/natsauth"
)

// serve runs every service with an embedded JetStream server whose store is under the data
// directory. The server has no network listener unless --nats-listen asks for one; the
// services reach it in process, each as its own user of bus.Table with a random password that
// lives in this process only and is valid for in-process connections only. The network listener
// of --nats-listen accepts the auditor alone (read-only PUSHGO_EVENTS), whose URL with password
// is kept in <data-dir>/credentials/auditor.url.
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
	passwords := map[bus.Role]string{}
	for _, r := range []bus.Role{bus.RoleIngest, bus.RoleLifecycle, bus.RoleDispatch} {
		pw, err := natsauth.NewPassword()
		if err != nil {
			return err
		}
		passwords[r] = pw
		u, err := natsauth.ServerUser(bus.User{Name: string(r), Password: pw, Role: r}, natsauth.InProcess)
		if err != nil {
			return err
		}
		opts.Users = append(opts.Users, u)
	}
	auditorFile := natsauth.AuditorFile(cfg.dataDir)
	var auditorPassword string
	if cfg.natsListen != "" {
		host, port, err := net.SplitHostPort(cfg.natsListen)
		if err != nil {
			return fmt.Errorf("--nats-listen: %w", err)
		}
		if opts.Port, err = strconv.Atoi(port); err != nil {
			return fmt.Errorf("--nats-listen: bad port %q", port)
		}
		if opts.Port == 0 {
			opts.Port = server.RANDOM_PORT
		}
		opts.Host = host
		if auditorPassword, err = natsauth.AuditorPassword(auditorFile); err != nil {
			return err
		}
		u, err := natsauth.ServerUser(bus.User{Name: string(bus.RoleAuditor), Password: auditorPassword, Role: bus.RoleAuditor}, natsauth.Network)
		if err != nil {
			return err
		}
		opts.Users = append(opts.Users, u)
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
	if cfg.natsListen != "" {
		if err := natsauth.WriteAuditorURL(auditorFile, auditorPassword, ns.Addr()); err != nil {
			return err
		}
	}
	log.Info("embedded JetStream ready", "store", opts.StoreDir, "listen", cfg.natsListen, "auditor_credentials", auditorFileIf(cfg, auditorFile))
	return startAll(ctx, cfg, log, nil, func(svc string) (*nats.Conn, error) {
		r := bus.Role(svc)
		return nats.Connect("", nats.Name("pushgo-"+svc), nats.InProcessServer(ns),
			nats.UserInfo(svc, passwords[r]), nats.CustomInboxPrefix(bus.InboxPrefix(r)),
			nats.ErrorHandler(natsErrors(log, svc)))
	})
}

func auditorFileIf(cfg config, file string) string {
	if cfg.natsListen == "" {
		return ""
	}
	return file
}
