// Command pushgo is the PushGo Event Gateway: `pushgo serve` runs every service with an
// embedded JetStream server; `pushgo ingest|lifecycle|dispatch` run one service against a NATS
// cluster. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "tenant" { // a client of the admin routes, not a service
		code := tenantCommand(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if len(os.Args) > 1 && os.Args[1] == "audit" { // a reader of the log, not a service
		code := auditCommand(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if len(os.Args) > 1 && slices.Contains([]string{"event", "channel", "device", "listen", "version"}, os.Args[1]) {
		// a client of a running gateway's HTTP API, not a service
		code := clientCommand(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	if len(os.Args) > 1 && os.Args[1] == "deploy-secrets" { // a one-shot generator, not a service
		code := deploySecrets(os.Args[2:], os.Stderr)
		stop()
		os.Exit(code)
	}
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pushgo:", err)
		os.Exit(2)
	}
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "pushgo:", err)
		os.Exit(1)
	}
}
