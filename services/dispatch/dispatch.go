// Package dispatch is the dispatch service: it consumes the event store PUSHGO_EVENTS, delivers
// each accepted op to the subscribers of its channel and records the op's outcome (200, or 503
// when a target failed) in pushgo_ops, where the waiting ingest request picks it up. Any number
// of instances may run against one JetStream; they share one durable consumer.
package dispatch

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/proto/secretbox"
	"pushgo.dev/gateway/services/dispatch/internal/apns"
	"pushgo.dev/gateway/services/dispatch/internal/directory"
	"pushgo.dev/gateway/services/dispatch/internal/fcm"
	"pushgo.dev/gateway/services/dispatch/internal/push"
	"pushgo.dev/gateway/services/dispatch/internal/retryq"
)

// Defaults of Config.
const (
	// DefaultWorkers is how many events one instance delivers at once; the ops of one event go
	// to one worker, in version order.
	DefaultWorkers = 64
	// DefaultAckWait is how long a domain event may stay unacknowledged before JetStream hands
	// it to another instance. It bounds how late a redelivery after a crash comes, and so must
	// stay below the inbox's duplicate window (bus.InboxDuplicateWindow) minus the delivery
	// budget; a handler holding a message longer marks it in progress.
	DefaultAckWait = 3 * time.Second
	// DefaultBudget bounds the delivery of one op, webhook retries included; it is shorter
	// than ingest's 5 s dispatch wait so that callers get the outcome in the same request.
	DefaultBudget = 4 * time.Second
	// DefaultWebhookTimeout bounds one webhook attempt.
	DefaultWebhookTimeout = 2 * time.Second
	maxAckPending         = 8192
	// brokerBudget bounds the retries of one usage flush through a broker failover.
	brokerBudget = 10 * time.Second
	// maxInboxInFlight bounds the inbox appends awaiting their ack (a 1000-device channel
	// makes 1000 per op).
	maxInboxInFlight = 32768
	// DefaultWebhookRetrySchedule is the durable retry schedule of webhook deliveries
	// (DESIGN.md §10.3): the delay after the op's budget ends, then after each failed attempt.
	DefaultWebhookRetrySchedule = retryq.DefaultSchedule
	// retryWorkers is how many scheduled webhook attempts one instance makes at once.
	retryWorkers = 32
	// recordHeadroom is what an op record leaves of the broker's max payload for the KV
	// message's subject and headers.
	recordHeadroom = 4 << 10
)

// Config configures one dispatch instance.
type Config struct {
	Workers int
	AckWait time.Duration
	// Budget bounds the delivery of one op to all its targets.
	Budget         time.Duration
	WebhookTimeout time.Duration
	// WebhookAllowPrivate permits webhooks to loopback and private networks (tests, LANs).
	WebhookAllowPrivate bool
	// WebhookRetrySchedule is the comma-separated delays of the durable retries of a webhook
	// delivery that failed past its op's budget (DefaultWebhookRetrySchedule when empty;
	// "none" turns them off).
	WebhookRetrySchedule string
	// MaxRecordBytes bounds an encoded op record (0: the broker's max payload less headroom
	// for the message's headers); receipts beyond it are counted instead of kept.
	MaxRecordBytes int
	// Bus sizes the streams and buckets this instance provisions at start.
	Bus bus.Options
	// LogPublicKeys (comma-separated files) verify the event log before anything is pushed
	// (proto/logsign). Without them nothing is checked (a warning at start).
	LogPublicKeys string
	// Secrets opens the sealed webhook secrets of device records (DESIGN.md §9.3); clear ones
	// written by older builds are used as they are. nil opens none: a webhook whose secret is
	// sealed then fails (webhook_secret_unreadable), and a warning is logged at start.
	Secrets *secretbox.Box
	// APNs configures delivery to devices on route apns; without a key file such a target
	// fails with provider_not_configured.
	APNs APNsConfig
	// FCM configures delivery to devices on route fcm; without a credentials file such a
	// target fails with provider_not_configured.
	FCM FCMConfig
}

// FCMConfig is how dispatch reaches FCM (DESIGN.md §10.2).
type FCMConfig struct {
	// CredentialsFile is the service account key (JSON) of the Firebase project.
	CredentialsFile string
	// URL replaces FCM's host (fcm.Host), TokenURL the key file's token_uri (tests).
	URL      string
	TokenURL string
	// TLS configures the connections (tests trusting a local fake); nil trusts the system
	// pool, where SSL_CERT_FILE adds a certificate.
	TLS *tls.Config
}

// client returns the FCM client the settings describe, nil when no credentials file is set.
func (c FCMConfig) client(timeout time.Duration) (*fcm.Client, error) {
	if c.CredentialsFile == "" {
		return nil, nil
	}
	data, err := os.ReadFile(c.CredentialsFile)
	if err != nil {
		return nil, fmt.Errorf("fcm: %w", err)
	}
	creds, err := fcm.ParseCredentials(data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, c.CredentialsFile)
	}
	if c.TokenURL != "" {
		creds.TokenURI = c.TokenURL
	}
	return fcm.New(fcm.Config{Credentials: creds, URL: cmp.Or(c.URL, fcm.Host), TLS: c.TLS, Timeout: timeout})
}

// APNsConfig is how dispatch reaches APNs (DESIGN.md §10.1).
type APNsConfig struct {
	// KeyFile is the .p8 auth key Apple issued (PEM, PKCS#8 P-256); KeyID its key id, TeamID
	// the developer team's id, Topic the app's bundle id.
	KeyFile string
	KeyID   string
	TeamID  string
	Topic   string
	// Environment is "production" (the default) or "sandbox" (builds signed for development);
	// URL, when set, replaces the host it picks (a test server).
	Environment string
	URL         string
	// ActivityType is the attributes-type of the Live Activities an event's create starts
	// (the app's ActivityAttributes type name; DefaultActivityType when empty).
	ActivityType string
	// TLS configures the connection (tests trusting a local fake); nil trusts the system
	// pool, where SSL_CERT_FILE adds a certificate.
	TLS *tls.Config
}

// DefaultActivityType is the attributes-type of started Live Activities unless
// --apns-activity-type names the app's own.
const DefaultActivityType = "PushGoEventAttributes"

// client returns the APNs client the settings describe, nil when no key file is set.
func (c APNsConfig) client(timeout time.Duration) (*apns.Client, error) {
	if c.KeyFile == "" {
		if c.KeyID != "" || c.TeamID != "" || c.Topic != "" {
			return nil, errors.New("apns: --apns-key-id, --apns-team-id and --apns-topic need --apns-key-file")
		}
		return nil, nil
	}
	url := c.URL
	switch c.Environment {
	case "", "production":
		url = cmp.Or(url, apns.HostProduction)
	case "sandbox":
		url = cmp.Or(url, apns.HostSandbox)
	default:
		return nil, fmt.Errorf("apns: --apns-environment must be production or sandbox, not %q", c.Environment)
	}
	p8, err := os.ReadFile(c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("apns: %w", err)
	}
	key, err := apns.ParseKey(p8)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, c.KeyFile)
	}
	return apns.New(apns.Config{Key: key, KeyID: c.KeyID, TeamID: c.TeamID, Topic: c.Topic, URL: url, TLS: c.TLS, Timeout: timeout})
}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	if c.Workers < 0 || c.AckWait < 0 || c.Budget < 0 || c.WebhookTimeout < 0 || c.MaxRecordBytes < 0 {
		return errors.New("dispatch: workers, ack wait, budgets and record size must not be negative")
	}
	if _, err := retryq.ParseSchedule(cmp.Or(c.WebhookRetrySchedule, DefaultWebhookRetrySchedule)); err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	return nil
}

// Deps are the connections Run uses; Run does not close them.
type Deps struct {
	NC     *nats.Conn
	Logger *slog.Logger
	// LogMemo, when set, is shared with the other services of this process (pushgo serve):
	// entries lifecycle signed are accepted without verifying their signature again
	// (logsign.Memo).
	LogMemo *logsign.Memo
}

// Run provisions the bus, then delivers domain events until ctx is done, finishing those in
// hand.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	err := run(ctx, cfg, deps)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil // stopped while starting, e.g. waiting for the streams other services provision
	}
	return err
}

func run(ctx context.Context, cfg Config, deps Deps) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cmp.Or(deps.Logger, slog.Default()).With("service", "dispatch")
	js, err := jetstream.New(deps.NC, jetstream.WithPublishAsyncMaxPending(maxInboxInFlight),
		jetstream.WithPublishAsyncTimeout(bus.PerTry))
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	if err := bus.ProvisionRole(ctx, js, cfg.Bus, bus.RoleDispatch, log); err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	layout := cfg.Bus.Layout()
	// One durable consumer per partition's events stream, all pulled by every instance: any
	// instance takes over any partition.
	cons := make([]jetstream.Consumer, layout.Partitions())
	for p := range cons {
		cons[p], err = js.CreateOrUpdateConsumer(ctx, layout.EventsStream(p), jetstream.ConsumerConfig{
			Durable:       bus.ConsumerDispatch,
			Description:   "dispatch: delivers accepted ops and records outcomes",
			DeliverPolicy: jetstream.DeliverAllPolicy,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       cmp.Or(cfg.AckWait, DefaultAckWait),
			MaxDeliver:    -1,
			MaxAckPending: maxAckPending,
		})
		if err != nil {
			return fmt.Errorf("dispatch: consumer of %s: %w", layout.EventsStream(p), err)
		}
	}
	dirCtx, stopDir := context.WithCancel(context.WithoutCancel(ctx))
	defer stopDir()
	dir, err := directory.Start(dirCtx, js, log)
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	// Deliveries of hosted-mode tenants, batched in memory and flushed after the consumer
	// has stopped (bus.UsageMeter).
	meter, err := bus.NewUsageMeter(ctx, js, brokerBudget, log)
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	meterCtx, stopMeter := context.WithCancel(context.WithoutCancel(ctx))
	meterDone := make(chan struct{})
	go func() { meter.Run(meterCtx, 0); close(meterDone) }()
	defer func() { stopMeter(); <-meterDone }()
	_, verifier, err := logsign.Load("", cfg.LogPublicKeys)
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	verifier.SetDirect(cfg.Bus.Replicas <= 1) // an R1 log's only replica is its leader
	verifier.SetMemo(deps.LogMemo)
	if verifier == nil {
		log.Warn("no log public keys (--log-public-keys): domain events are pushed unchecked")
	} else {
		for _, stream := range layout.EventsStreams() {
			if err := verifier.FollowHorizon(ctx, js, stream, log); err != nil {
				return fmt.Errorf("dispatch: %w", err)
			}
		}
	}
	budget := cmp.Or(cfg.Budget, DefaultBudget)
	apnsClient, err := cfg.APNs.client(budget)
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	if apnsClient != nil {
		log.Info("APNs configured", "key_id", cfg.APNs.KeyID, "team_id", cfg.APNs.TeamID, "topic", cfg.APNs.Topic,
			"environment", cmp.Or(cfg.APNs.Environment, "production"), "url", cfg.APNs.URL)
	}
	fcmClient, err := cfg.FCM.client(budget)
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	if fcmClient != nil {
		log.Info("FCM configured", "credentials", cfg.FCM.CredentialsFile)
	}
	schedule, _ := retryq.ParseSchedule(cmp.Or(cfg.WebhookRetrySchedule, DefaultWebhookRetrySchedule)) // checked by Validate
	var retries *retryq.Queue
	var retryCons jetstream.Consumer
	if schedule != nil {
		retries = retryq.New(js, schedule, log)
		if retryCons, err = retries.Consumer(ctx, retryWorkers); err != nil {
			return fmt.Errorf("dispatch: %w", err)
		}
	}
	// Its pending domain events and due retries, and the retries scheduled, on each scrape.
	watched, watchedStreams := cons, []jetstream.Stream{}
	if retryCons != nil {
		watched = append(slices.Clip(watched), retryCons)
		if st, err := js.Stream(ctx, bus.StreamRetries); err == nil {
			watchedStreams = append(watchedStreams, st)
		}
	}
	defer metrics.WatchBroker(watched, watchedStreams)()
	h, err := push.New(ctx, js, dir, push.Config{
		Retries:             retries,
		APNs:                apnsClient,
		ActivityType:        cmp.Or(cfg.APNs.ActivityType, DefaultActivityType),
		FCM:                 fcmClient,
		ProviderParallel:    64,
		Verifier:            verifier,
		Budget:              budget,
		WebhookTimeout:      cmp.Or(cfg.WebhookTimeout, DefaultWebhookTimeout),
		WebhookAllowPrivate: cfg.WebhookAllowPrivate,
		WebhookParallel:     32,
		MaxRecordBytes:      cmp.Or(cfg.MaxRecordBytes, int(deps.NC.MaxPayload())-recordHeadroom),
		Usage:               meter,
		Secrets:             cfg.Secrets,
		Layout:              layout,
	}, log)
	if err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	defer h.Close() // after the consumer and the redrive subscription, which write through it
	redrive, err := deps.NC.QueueSubscribe(bus.RedriveSubject, bus.QueueDispatch, h.Redrive)
	if err != nil {
		return fmt.Errorf("dispatch: subscribe %s: %w", bus.RedriveSubject, err)
	}
	defer func() { _ = redrive.Unsubscribe() }()
	if cfg.Secrets == nil {
		log.Warn("no --secrets-key-file: only webhook secrets stored in clear can sign deliveries")
	}
	log.Info("dispatch running", "workers", cmp.Or(cfg.Workers, DefaultWorkers), "partitions", layout.Partitions(),
		"webhook_retry_schedule", cmp.Or(cfg.WebhookRetrySchedule, DefaultWebhookRetrySchedule))
	var retrying sync.WaitGroup
	defer retrying.Wait() // before h.Close: scheduled attempts write through it
	if retries != nil {
		retrying.Go(func() {
			if err := retries.Consume(ctx, retryCons, retryWorkers, h.RetryDue); err != nil {
				log.Error("webhook retries stopped", "err", err)
			}
		})
	}
	return bus.Consume(ctx, cons, cmp.Or(cfg.Workers, DefaultWorkers), log, h.Handle)
}
