package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/logctx"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/services/dispatch"
	"pushgo.dev/gateway/services/ingest"
	"pushgo.dev/gateway/services/lifecycle"
)

// config is every setting of every subcommand; each flag has an environment variable
// (PUSHGO_<FLAG>, upper case, '-' → '_') that sets its default, so flags win over the env.
type config struct {
	command string

	logLevel  string
	logFormat string
	// pprofAddr, when set, serves net/http/pprof there (profiling; keep it on loopback).
	pprofAddr string
	// metricsAddr, when set, serves GET /metrics there without a token (and not on the API
	// listener); lifecycle and dispatch have metrics only there.
	metricsAddr string

	// serve only
	dataDir string
	// logPublicKeys is --log-public-keys, shared by the services.
	logPublicKeys string
	natsListen    string
	// services against an external NATS: URL, credentials (the password in a file, not on the
	// command line) and the CA that signed the servers' certificates (TLS).
	natsURL          string
	natsUser         string
	natsPasswordFile string
	natsCAFile       string
	// serve, ingest, dispatch: the key sealing secrets at rest (serve: <data-dir>/keys/secrets.key
	// when empty) and the old keys still accepted for reading, comma separated (secrets.go).
	secretsKeyFile     string
	secretsOldKeyFiles string

	ingest    ingest.Config
	lifecycle lifecycle.Config
	dispatch  dispatch.Config
	bus       bus.Options

	// healthcheck
	checkURL string
}

const usage = `pushgo — the PushGo Event Gateway

Usage:
  pushgo serve [flags]        all services with an embedded JetStream server (the default setup)
  pushgo ingest [flags]       the HTTP/gRPC API, against --nats-url
  pushgo lifecycle [flags]    the lifecycle service, against --nats-url
  pushgo dispatch [flags]     the dispatch service, against --nats-url
  pushgo healthcheck [flags]  exit 0 when the API at --http-addr answers /healthz (for containers)
  pushgo tenant <command>     administer a hosted gateway's tenants (create, update, delete, list, usage)
  pushgo audit <command>      read and check the event log (export, verify, state); never writes
  pushgo deploy-secrets       write the compose cluster's CA, NATS certificates, users and config (--dir)

A client of a running gateway (PUSHGO_URL, PUSHGO_TOKEN, PUSHGO_CHANNEL_ID, PUSHGO_PASSWORD):
  pushgo event create|update|close|get|history|list   send an op, read events
  pushgo channel create       make a channel
  pushgo device register|subscribe
  pushgo listen --device-key K   print a device's pushes as they come (--json)
  pushgo version

Run "pushgo <command> -h" for the flags of a command. Every flag can also be set with the
environment variable PUSHGO_<FLAG> (e.g. --http-addr: PUSHGO_HTTP_ADDR); a flag wins over it.
`

// parseConfig reads the command line and the environment (getenv is os.Getenv outside tests).
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, usage)
		return c, errors.New("missing command")
	}
	c.command = args[0]
	fs := flag.NewFlagSet("pushgo "+c.command, flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := func(name, def string) string {
		if v := getenv("PUSHGO_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))); v != "" {
			return v
		}
		return def
	}
	str := func(p *string, name, def, help string) { fs.StringVar(p, name, env(name, def), help) }
	dur := func(p *time.Duration, name string, def time.Duration, help string) {
		d, err := time.ParseDuration(env(name, def.String()))
		if err != nil {
			d = def
		}
		fs.DurationVar(p, name, d, help)
	}
	num := func(p *int, name string, def int, help string) {
		n, err := strconv.Atoi(env(name, strconv.Itoa(def)))
		if err != nil {
			n = def
		}
		fs.IntVar(p, name, n, help)
	}
	float := func(p *float64, name string, def float64, help string) {
		x, err := strconv.ParseFloat(env(name, strconv.FormatFloat(def, 'g', -1, 64)), 64)
		if err != nil {
			x = def
		}
		fs.Float64Var(p, name, x, help)
	}
	str(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	str(&c.logFormat, "log-format", "text", "text or json (to stderr)")
	if c.command != "healthcheck" {
		str(&c.pprofAddr, "pprof-addr", "", "serve Go profiles (net/http/pprof) on this address, e.g. 127.0.0.1:6060")
		str(&c.metricsAddr, "metrics-addr", "", "serve Prometheus GET /metrics on this address, without a token (default: on the API listener behind the token; lifecycle and dispatch: none)")
	}

	boolean := func(p *bool, name string, help string) {
		v, _ := strconv.ParseBool(env(name, "false"))
		fs.BoolVar(p, name, v, help)
	}
	var inboxCap int
	busFlags := func(defReplicas int) {
		num(&c.bus.Replicas, "replicas", defReplicas, "replicas of every stream and bucket (3 in a 3-node cluster); give every service the same value")
		num(&c.bus.Partitions, "partitions", 1, fmt.Sprintf("split commands and events into this many streams (1..%d) by a hash of channel_id, each with its own leader; a store keeps the count it was made with; give every service the same value", bus.MaxPartitions))
		dur(&c.bus.IdempotencyWindow, "idempotency-window", bus.DefaultIdempotencyWindow, "how long an op_id is remembered")
		dur(&c.bus.EventsMaxAge, "events-max-age", bus.DefaultEventsMaxAge, "how long the event store (the audit log) keeps events (0: for ever)")
		boolean(&c.bus.ConfirmShorterRetention, "confirm-shorter-retention", "allow --events-max-age to shorten an existing event store's retention, deleting older history")
		dur(&c.bus.InboxMaxAge, "inbox-max-age", bus.DefaultInboxMaxAge, "how long an unacknowledged inbox item is kept")
		num(&inboxCap, "inbox-per-device", bus.DefaultInboxPerDevice, "items kept per device inbox; beyond it the oldest is dropped")
	}
	secretsFlags := func(keyHelp string) {
		str(&c.secretsKeyFile, "secrets-key-file", "", keyHelp)
		str(&c.secretsOldKeyFiles, "secrets-old-key-files", "", "old secrets keys still accepted for reading (rotation), comma separated")
	}
	var allowPrivate bool
	dispatchFlags := func() {
		dur(&c.dispatch.Budget, "delivery-budget", dispatch.DefaultBudget, "time to deliver one op to all targets, retries included (serve: 4/5 of --dispatch-wait unless set)")
		str(&c.dispatch.WebhookRetrySchedule, "webhook-retry-schedule", dispatch.DefaultWebhookRetrySchedule, "delays of the durable retries of a webhook still failing when the op's budget ends: the first from the budget's end, each next from the attempt before (none: off)")
		str(&c.dispatch.APNs.KeyFile, "apns-key-file", "", "APNs auth key (.p8 file from Apple); without it devices on route apns fail with provider_not_configured")
		str(&c.dispatch.APNs.KeyID, "apns-key-id", "", "APNs: the auth key's key id (10 characters)")
		str(&c.dispatch.APNs.TeamID, "apns-team-id", "", "APNs: the Apple developer team id")
		str(&c.dispatch.APNs.Topic, "apns-topic", "", "APNs: the app's bundle id")
		str(&c.dispatch.APNs.Environment, "apns-environment", "production", "APNs: production or sandbox (apps built for development)")
		str(&c.dispatch.APNs.URL, "apns-url", "", "APNs: base URL replacing the environment's Apple host (tests)")
		str(&c.dispatch.APNs.ActivityType, "apns-activity-type", dispatch.DefaultActivityType, "APNs: the attributes-type of the Live Activities an event's create starts (the app's ActivityAttributes type)")
		str(&c.dispatch.FCM.CredentialsFile, "fcm-credentials-file", "", "FCM: the Firebase project's service account key (JSON); without it devices on route fcm fail with provider_not_configured")
		str(&c.dispatch.FCM.URL, "fcm-url", "", "FCM: base URL replacing https://fcm.googleapis.com (tests)")
		str(&c.dispatch.FCM.TokenURL, "fcm-token-url", "", "FCM: OAuth2 token URL replacing the key file's token_uri (tests)")
	}
	ingestFlags := func() {
		str(&c.ingest.HTTPAddr, "http-addr", ingest.DefaultHTTPAddr, "REST API listen address")
		str(&c.ingest.GRPCAddr, "grpc-addr", ingest.DefaultGRPCAddr, `gRPC API listen address ("" for none)`)
		str(&c.ingest.Token, "token", "", "gateway token required as Authorization: Bearer <token> (empty: none)")
		str(&c.ingest.AdminToken, "admin-token", "", "hosted mode: the admin routes' token; every other route then takes a tenant's API key (not with --token)")
		num(&c.ingest.ChannelsPerTenant, "channels-per-tenant", ingest.DefaultChannelsPerTenant, "hosted mode: channels a tenant may own unless its limits say otherwise (0: no limit)")
		num(&c.ingest.DevicesPerTenant, "devices-per-tenant", ingest.DefaultDevicesPerTenant, "hosted mode: devices a tenant may own unless its limits say otherwise (0: no limit)")
		dur(&c.ingest.DispatchWait, "dispatch-wait", ingest.DefaultDispatchWait, "how long a request waits for delivery before 503 dispatch_timeout")
		dur(&c.ingest.RetryBudget, "publish-retry", ingest.DefaultRetryBudget, "how long broker calls are retried before 503 unavailable")
		dur(&c.ingest.BodyTimeout, "body-timeout", ingest.DefaultBodyTimeout, "time to receive a request's whole body before 408 request_timeout")
		float(&c.ingest.ChannelOpsPerSecond, "channel-ops-per-second", ingest.DefaultChannelOpsPerSecond, "event ops (create, update, close) per second per channel, burst 2×, across all ingest instances (0: no limit)")
		float(&c.ingest.TenantOpsPerSecond, "tenant-ops-per-second", ingest.DefaultTenantOpsPerSecond, "event ops per second per tenant in hosted mode, burst 2× (0: no limit)")
		num(&c.ingest.SubscribersPerChannel, "subscribers-per-channel", ingest.DefaultSubscribersPerChannel, "devices subscribed to one channel at most (0: no limit)")
		num(&c.ingest.HashConcurrency, "hash-concurrency", ingest.DefaultHashConcurrency, "password hashes (argon2id, 19 MiB each) computed at once; waiters beyond 1 s get 503 busy (0: no bound)")
		num(&c.ingest.PasswordFailuresPerMinute, "password-failures-per-minute", ingest.DefaultPasswordFailuresPerMinute, "password checks per channel and client address per minute, then 429 too_many_attempts with doubling lockouts (0: off)")
		num(&c.ingest.CreatesPerMinute, "creates-per-minute", ingest.DefaultCreatesPerMinute, "channel and device creates per client address per minute, then 429 rate_limited (0: off)")
		str(&c.ingest.TrustedProxies, "trusted-proxies", "", "CIDRs of proxies whose X-Forwarded-For names the client, comma separated")
		str(&c.ingest.CORSOrigins, "cors-origins", "", `origins whose browser pages may call the API (scheme://host[:port], comma separated, or "*"); none by default`)
		str(&c.ingest.LimitExempt, "limit-exempt", "", "CIDRs of clients the per-address limits skip, comma separated")
		dur(&c.ingest.RetryHold, "retry-hold", ingest.DefaultRetryHold, "hold a direct client's request up to this long when it comes back on a connection before the Retry-After it got there (0: off)")
		num(&c.ingest.ChannelConcurrency, "channel-concurrency", ingest.DefaultChannelConcurrency, "event ops of one channel run at once on this instance; more wait their turn in arrival order (0: no bound)")
		num(&c.ingest.StreamsPerDevice, "streams-per-device", ingest.DefaultStreamsPerDevice, "live streams (SSE + WebSocket) per device, over all ingest instances; 0: no limit")
		num(&c.ingest.StreamsPerTenant, "streams-per-tenant", ingest.DefaultStreamsPerTenant, "live streams of a tenant's devices, over all ingest instances; 0: no limit")
		dur(&c.ingest.StreamWriteTimeout, "stream-write-timeout", ingest.DefaultStreamWriteTimeout, "drop a stream whose client does not take a write (or answer a WebSocket ping) within this")
	}
	logKeyFlag := func() {
		str(&c.lifecycle.LogKeyFile, "log-key-file", "", "private Ed25519 key (PEM) that signs every event log entry (serve: generated in <data-dir>/keys unless set)")
	}
	logPublicKeysFlag := func() {
		str(&c.logPublicKeys, "log-public-keys", "", "public keys (PEM files, comma separated) that verify the event log, the current one and those of earlier entries")
	}
	natsFlags := func() {
		str(&c.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server URLs, comma separated (tls://… with --nats-ca-file)")
		str(&c.natsUser, "nats-user", "", "NATS user (default: the command's name, which is its role in the permission table); used with --nats-password-file")
		str(&c.natsPasswordFile, "nats-password-file", "", "file holding the NATS user's password (empty: connect without credentials)")
		str(&c.natsCAFile, "nats-ca-file", "", "PEM file of the CA that signed the NATS servers' certificates: connect with TLS and verify them")
	}
	switch c.command {
	case "serve":
		logKeyFlag()
		logPublicKeysFlag()
		ingestFlags()
		dispatchFlags()
		busFlags(1)
		boolean(&allowPrivate, "webhook-allow-private", "accept and call webhooks on loopback and private networks")
		secretsFlags("key (32 bytes, standard base64, one line) sealing webhook secrets at rest (default <data-dir>/keys/secrets.key, generated on first start)")
		str(&c.dataDir, "data-dir", "data", "directory of the embedded JetStream store")
		str(&c.natsListen, "nats-listen", "", `also expose the embedded NATS server on host:port (default: no network listener)`)
	case "ingest":
		logPublicKeysFlag()
		ingestFlags()
		busFlags(1)
		boolean(&allowPrivate, "webhook-allow-private", "accept webhooks on loopback and private networks")
		secretsFlags("key (32 bytes, standard base64, one line) sealing webhook secrets at rest (none: stored in clear, with a warning)")
		natsFlags()
	case "dispatch":
		logPublicKeysFlag()
		dispatchFlags()
		busFlags(1)
		boolean(&allowPrivate, "webhook-allow-private", "call webhooks on loopback and private networks")
		secretsFlags("key opening the webhook secrets ingest sealed (none: only clear ones sign, with a warning)")
		natsFlags()
	case "lifecycle":
		logKeyFlag()
		logPublicKeysFlag()
		busFlags(1)
		natsFlags()
	case "healthcheck":
		str(&c.checkURL, "http-addr", ingest.DefaultHTTPAddr, "address of the API to check")
	case "help", "-h", "--help":
		fmt.Fprint(stderr, usage)
		return c, flag.ErrHelp
	default:
		fmt.Fprint(stderr, usage)
		return c, fmt.Errorf("unknown command %q", c.command)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if c.dataDir != "" {
		abs, err := filepath.Abs(c.dataDir)
		if err != nil {
			return c, err
		}
		c.dataDir = abs
	}
	c.bus.InboxPerDevice = int64(inboxCap)
	switch {
	case c.bus.EventsMaxAge < 0:
		return c, fmt.Errorf("--events-max-age must not be negative (0 keeps events for ever), not %s", c.bus.EventsMaxAge)
	case c.bus.EventsMaxAge == 0:
		c.bus.EventsMaxAge = bus.EventsForever
	}
	if c.command == "serve" && !isSet(fs, "delivery-budget") && getenv("PUSHGO_DELIVERY_BUDGET") == "" {
		// Derived, so that --dispatch-wait alone is enough to tune both.
		c.dispatch.Budget = c.ingest.DispatchWait * 4 / 5
	}
	c.lifecycle.Bus, c.dispatch.Bus, c.ingest.Bus = c.bus, c.bus, c.bus
	c.lifecycle.LogPublicKeys, c.dispatch.LogPublicKeys, c.ingest.LogPublicKeys = c.logPublicKeys, c.logPublicKeys, c.logPublicKeys
	c.ingest.WebhookAllowPrivate, c.dispatch.WebhookAllowPrivate = allowPrivate, allowPrivate
	c.ingest.NoMetricsRoute = c.metricsAddr != ""
	return c, c.validate()
}

// ensureLogKeys gives pushgo serve a log key when none was given: the key pair in dir,
// generated on first start. Its public key is added to every service's verifier.
func (c *config) ensureLogKeys(dir string) error {
	if c.lifecycle.LogKeyFile != "" {
		return nil
	}
	priv, pub, err := logsign.EnsureKeyPair(dir)
	if err != nil {
		return fmt.Errorf("log key: %w", err)
	}
	c.lifecycle.LogKeyFile = priv
	keys := pub
	if c.logPublicKeys != "" {
		keys += "," + c.logPublicKeys
	}
	c.lifecycle.LogPublicKeys, c.dispatch.LogPublicKeys, c.ingest.LogPublicKeys = keys, keys, keys
	return nil
}

// isSet reports whether a flag was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

func (c config) validate() error {
	if c.command == "healthcheck" {
		return nil
	}
	if c.command == "serve" && c.dispatch.Budget >= c.ingest.DispatchWait {
		return fmt.Errorf("--delivery-budget (%s) must be below --dispatch-wait (%s) for callers to get delivery outcomes", c.dispatch.Budget, c.ingest.DispatchWait)
	}
	if c.bus.Replicas < 1 || c.bus.Replicas > 5 {
		return fmt.Errorf("--replicas must be 1 to 5, not %d", c.bus.Replicas)
	}
	if c.bus.Partitions < 1 || c.bus.Partitions > bus.MaxPartitions {
		return fmt.Errorf("--partitions must be 1 to %d, not %d", bus.MaxPartitions, c.bus.Partitions)
	}
	return errors.Join(c.ingest.Validate(), c.lifecycle.Validate(), c.dispatch.Validate())
}

// logger builds the process logger.
func (c config) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	o := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text": // every line about an op names its ids (logctx)
		return slog.New(logctx.NewHandler(slog.NewTextHandler(w, o))), nil
	case "json":
		return slog.New(logctx.NewHandler(slog.NewJSONHandler(w, o))), nil
	default:
		return nil, fmt.Errorf("--log-format must be text or json, not %q", c.logFormat)
	}
}
