package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/services/lifecycle/audit"
)

const auditUsage = `pushgo audit — read and check the event log (DESIGN.md §9.4); it never writes

Usage:
  pushgo audit export [filters]           every entry as a JSON line on stdout
  pushgo audit verify [filters]           check authenticators, chains and the lifecycle fold
  pushgo audit state --at <t> [filters]   every event as it was at t, one JSON line each

Source (one of):
  --nats-url <url>    a live deployment, with auditor credentials in the URL
                      (nats://auditor:<password>@host:port, e.g. "$(cat <data-dir>/credentials/auditor.url)")
  --data-dir <dir>    a stopped pushgo serve data dir (read from a temporary copy of its store)

Filters: --channel <id>, --event <id> (with --channel), --thing <thing_id>, --since <t>,
--until <t>; t is Unix milliseconds or RFC 3339. verify takes --log-public-keys (PEM files,
comma separated; default with --data-dir: <data-dir>/keys/log-ed25519.pub.pem).

verify prints a line per problem and ends with
  audit: events=N entries=M ok=K unsigned=U broken=B mismatched=X
and exits 1 when any entry is broken or mismatched. Exit status 2: a usage or connection error.
`

// auditCommand runs `pushgo audit <command> [flags]` and returns the process's exit status.
func auditCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, auditUsage)
		return 2
	}
	cmd := args[0]
	if cmd != "export" && cmd != "verify" && cmd != "state" {
		fmt.Fprintf(stderr, "pushgo audit: unknown command %q\n\n%s", cmd, auditUsage)
		return 2
	}
	fs := flag.NewFlagSet("pushgo audit "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	natsURL := fs.String("nats-url", getenv("PUSHGO_NATS_URL"), "a live deployment's NATS, with auditor credentials")
	dataDir := fs.String("data-dir", "", "a stopped pushgo serve data dir")
	caFile := fs.String("nats-ca-file", getenv("PUSHGO_NATS_CA_FILE"), "PEM file of the CA that signed the NATS servers' certificates (tls:// URLs)")
	keys := fs.String("log-public-keys", getenv("PUSHGO_LOG_PUBLIC_KEYS"), "public log keys (PEM files, comma separated)")
	var f audit.Filter
	var since, until, at string
	fs.StringVar(&f.Channel, "channel", "", "only this channel")
	fs.StringVar(&f.Event, "event", "", "only this event (with --channel)")
	fs.StringVar(&f.Thing, "thing", "", "only events of this thing_id")
	fs.StringVar(&since, "since", "", "only entries recorded at or after t")
	fs.StringVar(&until, "until", "", "only entries recorded at or before t")
	if cmd == "state" {
		fs.StringVar(&at, "at", "", "the moment (required)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "pushgo audit:", err)
		return 2
	}
	var err error
	if f.Since, err = parseTime("--since", since); err != nil {
		return fail(err)
	}
	if f.Until, err = parseTime("--until", until); err != nil {
		return fail(err)
	}
	if f.Event != "" && f.Channel == "" {
		return fail(errors.New("--event needs --channel"))
	}
	if (*natsURL == "") == (*dataDir == "") {
		return fail(errors.New("give one of --nats-url and --data-dir"))
	}
	var atMs int64
	if cmd == "state" {
		if at == "" {
			return fail(errors.New("state needs --at"))
		}
		if atMs, err = parseTime("--at", at); err != nil {
			return fail(err)
		}
	}
	nc, closeSource, err := auditSource(*natsURL, *caFile, *dataDir)
	if err != nil {
		return fail(err)
	}
	defer closeSource()
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(err)
	}
	// The log's partitions, as the store recorded them: an auditor needs no deployment flags.
	n, err := bus.StoredPartitions(ctx, js)
	if err != nil {
		return fail(fmt.Errorf("read the log: %w", err))
	}
	f.Layout = bus.NewLayout(n)

	switch cmd {
	case "export":
		if _, err := audit.Export(ctx, nc, f, stdout); err != nil {
			return fail(err)
		}
	case "state":
		if _, err := audit.State(ctx, nc, atMs, f, stdout); err != nil {
			return fail(err)
		}
	case "verify":
		if *keys == "" && *dataDir != "" {
			if p := filepath.Join(*dataDir, "keys", "log-ed25519.pub.pem"); fileExists(p) {
				*keys = p
			}
		}
		_, v, err := logsign.Load("", *keys)
		if err != nil {
			return fail(err)
		}
		if v == nil {
			return fail(errors.New("verify needs --log-public-keys"))
		}
		for _, stream := range f.Layout.EventsStreams() {
			if err := v.LoadHorizon(ctx, js, stream); err != nil {
				return fail(err)
			}
		}
		r, err := audit.Verify(ctx, nc, v, f, stderr)
		if err != nil {
			return fail(err)
		}
		for _, p := range r.Problems {
			fmt.Fprintln(stdout, p)
		}
		fmt.Fprintln(stdout, r.Summary())
		if r.Broken > 0 || r.Mismatched > 0 {
			return 1
		}
	}
	return 0
}

// parseTime parses Unix milliseconds or RFC 3339; "" is 0 (no bound).
func parseTime(flagName, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("%s %q: neither Unix milliseconds nor RFC 3339", flagName, s)
	}
	return t.UnixMilli(), nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// auditSource connects to a live deployment as the auditor (its own reply prefix, which is all
// the permission table lets it subscribe to), or starts an embedded server on a temporary copy
// of a stopped data dir's store (a JetStream server writes to the store it opens, and the
// auditor's copy must stay as it was).
func auditSource(natsURL, caFile, dataDir string) (*nats.Conn, func(), error) {
	if natsURL != "" {
		opts := []nats.Option{nats.Name("pushgo-audit"), nats.Timeout(5 * time.Second),
			nats.CustomInboxPrefix(bus.InboxPrefix(bus.RoleAuditor))}
		if caFile != "" {
			opts = append(opts, nats.RootCAs(caFile))
		}
		nc, err := nats.Connect(natsURL, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("connect: %w", err)
		}
		return nc, nc.Close, nil
	}
	store := filepath.Join(dataDir, "jetstream")
	if !fileExists(store) {
		return nil, nil, fmt.Errorf("%s: no JetStream store", store)
	}
	tmp, err := os.MkdirTemp("", "pushgo-audit-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(tmp) }
	if err := os.CopyFS(filepath.Join(tmp, "jetstream"), os.DirFS(store)); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("copy the store: %w", err)
	}
	ns, err := server.NewServer(&server.Options{ServerName: "pushgo", JetStream: true, StoreDir: filepath.Join(tmp, "jetstream"),
		NoSigs: true, NoLog: true, DontListen: true})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	go ns.Start()
	stop := func() { ns.Shutdown(); ns.WaitForShutdown(); cleanup() }
	if !ns.ReadyForConnections(30 * time.Second) {
		stop()
		return nil, nil, errors.New("the store copy did not open in 30s")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		stop()
		return nil, nil, err
	}
	return nc, func() { nc.Close(); stop() }, nil
}
