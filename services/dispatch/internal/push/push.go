// Package push turns domain events into pushes and op outcomes. For every domain event of
// PUSHGO_EVENTS it resolves the op's targets (the channel's subscribers at dispatch time),
// delivers to each — the device's inbox stream, a signed webhook, or a provider — keeps one
// receipt per target, and records the op's outcome: a 200 in the outcome journal (batched with
// other instances' outcomes, bus.Journal), a 503 dispatch_partial_failure with its receipts in
// pushgo_ops. Only then is the outcome published to the waiting ingest request
// (bus.OutcomeSubject) and the domain event acked, so an outcome that was answered is always
// on record for a repeat. A repeat of a 503 op asks it (Redrive) to retry the failed targets
// only.
//
// Every delivery of one op to one device carries the same delivery id, derived from the op and
// the device: a domain event redelivered after a crash appends no second inbox item
// (Nats-Msg-Id) and re-sends webhooks under the same X-Pushgo-Delivery-Id.
package push

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logctx"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/proto/secretbox"
	"pushgo.dev/gateway/proto/tracing"
	"pushgo.dev/gateway/proto/webhook"
	"pushgo.dev/gateway/services/dispatch/internal/apns"
	"pushgo.dev/gateway/services/dispatch/internal/fcm"
	"pushgo.dev/gateway/services/dispatch/internal/retryq"
)

// brokerBudget bounds the retries of one broker call through an outage (a leader election
// takes 4–9 s).
const brokerBudget = 10 * time.Second

// attemptLogWait bounds the wait for the attempts log (PUSHGO_ATTEMPTS) of a delivery within
// an op's budget: the op's answer waits for it.
const attemptLogWait = 500 * time.Millisecond

// giveUpAfter is how many deliveries of a domain event failing with a non-transient error are
// tried, 1 s apart, before dispatch stops retrying it: over a minute, so that an error taken for
// permanent by mistake during an outage does not end an op (the broker being away is retried
// for as long as it lasts).
const giveUpAfter = 60

// Routes of a device.
const (
	RoutePrivate = "private"
	RouteWebhook = "webhook"
	RouteAPNs    = "apns"
	RouteFCM     = "fcm"
	// RouteLiveActivity is the receipt route of a push to a device's Live Activity (APNs
	// liveactivity): an op's extra target beside the device's own route.
	RouteLiveActivity = "liveactivity"
)

// Config tunes delivery.
type Config struct {
	// Budget bounds the delivery of one op to all its targets, retries included. It must be
	// shorter than ingest's dispatch wait for callers to get the outcome in one request.
	Budget time.Duration
	// WebhookTimeout bounds one webhook attempt.
	WebhookTimeout time.Duration
	// WebhookAllowPrivate permits webhooks to loopback and private networks.
	WebhookAllowPrivate bool
	// WebhookParallel bounds the webhooks of one op sent at once.
	WebhookParallel int
	// APNs and FCM send to devices on routes apns and fcm; nil fails those with
	// provider_not_configured.
	APNs *apns.Client
	FCM  *fcm.Client
	// ActivityType is the attributes-type of the Live Activities an event's create starts:
	// the name of the app's ActivityAttributes type.
	ActivityType string
	// ProviderParallel bounds the provider requests (APNs, FCM) of one op in flight at once;
	// they wait apart from webhooks and inboxes, so a slow provider holds neither back.
	ProviderParallel int
	// MaxRecordBytes bounds an encoded op record: receipts beyond it are counted, not kept
	// (busv1.OpRecord.delivered_omitted). It must be below the broker's max payload.
	MaxRecordBytes int
	// Usage, when set, counts each delivered target for its tenant's daily usage (hosted mode;
	// *bus.UsageMeter implements it).
	Usage usageCounter
	// Verifier opens every domain event before it is pushed (proto/logsign); nil checks
	// nothing (a deployment without log keys).
	Verifier *logsign.Verifier
	// Layout is the log's partitions: each event lives in its channel's events stream. The
	// zero Layout is one.
	Layout bus.Layout
	// Retries, when set, keeps webhook deliveries still failing when their op's budget ends on
	// its durable retry schedule (DESIGN.md §10.3; durable.go); nil leaves them to the
	// caller's repeat.
	Retries *retryq.Queue
	// Secrets opens the devices' sealed webhook secrets (nil: only clear ones are usable). A
	// secret that does not open is never used to sign: that target fails with
	// webhook_secret_unreadable, and the reason is logged.
	Secrets *secretbox.Box
}

// tracerScope is dispatch's instrumentation scope.
const tracerScope = "pushgo/dispatch"

// recentEvents bounds the events whose last entry dispatch remembers for the chain check.
const recentEvents = 1024

// usageCounter counts per-tenant daily usage in memory; *bus.UsageMeter implements it.
type usageCounter interface {
	Add(tenantID string, ops, deliveries uint64)
}

// provider sends an op to one device of a push provider's route (apnsSender, fcmSender):
// attempts made, why it failed ("" when delivered), and whether the provider refused the
// token for good.
type provider interface {
	send(ctx context.Context, token string, rec *busv1.EventRecorded, data map[string]string) (attempts int, why string, invalid bool)
}

// targets resolves an op's recipients; *directory.Directory implements it.
type targets interface {
	Targets(channelID string) []*busv1.DeviceRecord
	Device(key string) *busv1.DeviceRecord
}

// Handler delivers domain events. It is safe for concurrent use.
type Handler struct {
	cfg     Config
	js      jetstream.JetStream
	ops     jetstream.KeyValue
	devices jetstream.KeyValue // marks dead provider tokens and gone webhooks (invalidateRoute)
	journal *bus.Journal
	events  []jetstream.Stream // by partition
	dir     targets
	hooks   *webhookSender
	// providers by route (apns, fcm): those with credentials.
	providers map[string]provider
	log       *slog.Logger
	now       func() time.Time
	recent    *logsign.Recent
}

// New returns a handler. js must allow enough outstanding async publishes for a channel's
// private subscribers (jetstream.WithPublishAsyncMaxPending).
func New(ctx context.Context, js jetstream.JetStream, dir targets, cfg Config, log *slog.Logger) (*Handler, error) {
	ops, err := js.KeyValue(ctx, bus.BucketOps)
	if err != nil {
		return nil, fmt.Errorf("ops bucket: %w", err)
	}
	devices, err := js.KeyValue(ctx, bus.BucketDevices)
	if err != nil {
		return nil, fmt.Errorf("devices bucket: %w", err)
	}
	var events []jetstream.Stream
	for _, name := range cfg.Layout.EventsStreams() {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("events stream %s: %w", name, err)
		}
		events = append(events, s)
	}
	h := &Handler{cfg: cfg, js: js, ops: ops, devices: devices, journal: bus.NewJournal(js, log), events: events, dir: dir, hooks: newWebhookSender(cfg),
		log: log, now: time.Now, recent: logsign.NewRecent(recentEvents)}
	h.providers = map[string]provider{}
	if cfg.APNs != nil {
		h.providers[RouteAPNs] = &apnsSender{client: cfg.APNs}
	}
	if cfg.FCM != nil {
		h.providers[RouteFCM] = &fcmSender{client: cfg.FCM}
	}
	return h, nil
}

// Close stops the outcome journal's writer; call it once nothing is handled any more.
func (h *Handler) Close() { h.journal.Close() }

// Handle delivers one domain event and records its op's outcome, then acks. A failure naks the
// message for a later redelivery; an undecodable one is terminated and logged, and so is one
// that failed with a non-transient error on giveUpAfter deliveries: the event stays in the
// store, and its op keeps no outcome (a repeat of it is answered dispatch_timeout).
func (h *Handler) Handle(ctx context.Context, m jetstream.Msg) {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Budget+2*brokerBudget)
	defer cancel()
	ctx = tracing.FromHeaders(ctx, m.Headers()) // the request's id and trace (lifecycle put them there)
	md, err := m.Metadata()
	if err != nil {
		h.log.ErrorContext(ctx, "domain event without metadata", "subject", m.Subject(), "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	e, err := h.open(ctx, m.Subject(), md.Sequence.Stream, m.Data())
	if ie, ok := errors.AsType[*logsign.IntegrityError](err); ok {
		// Not lifecycle's entry, or not where lifecycle put it: never pushed, and no op record
		// is written from it (its ids are whatever the writer chose).
		h.log.ErrorContext(ctx, "event log entry failed its integrity check; not pushed", "subject", ie.Subject, "seq", ie.Seq, "reason", ie.Reason)
		_ = m.TermWithReason("integrity check failed")
		return
	}
	if err != nil {
		h.log.WarnContext(ctx, "domain event will be retried", "subject", m.Subject(), "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	rec := e.Rec
	env := rec.GetEnvelope()
	ctx = logctx.WithOp(ctx, env.GetChannelId(), env.GetEventId(), env.GetOpId())
	if tracing.Enabled() {
		var span trace.Span
		ctx, span = tracing.Start(ctx, tracerScope, "deliver "+rec.GetRoute(), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("pushgo.channel_id", env.GetChannelId()), attribute.String("pushgo.event_id", env.GetEventId()),
				attribute.String("pushgo.op_id", env.GetOpId()), attribute.Int64("messaging.delivery_count", int64(md.NumDelivered))))
		defer span.End()
	}
	if err := h.handle(ctx, rec, md); err != nil {
		if !bus.Transient(err) && md.NumDelivered >= giveUpAfter {
			h.log.ErrorContext(ctx, "domain event failed on every delivery; dispatch gives up on it", "op", rec.GetEnvelope().GetId(),
				"delivered", md.NumDelivered, "err", err)
			_ = m.TermWithReason("failed on every delivery")
			return
		}
		h.log.WarnContext(ctx, "domain event will be retried", "op", rec.GetEnvelope().GetId(), "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	if err := m.Ack(); err != nil {
		h.log.WarnContext(ctx, "ack domain event", "op", rec.GetEnvelope().GetId(), "err", err)
	}
}

func (h *Handler) handle(ctx context.Context, rec *busv1.EventRecorded, md *jetstream.MsgMetadata) error {
	if md.NumDelivered > 1 {
		// Another instance may have finished this op and died before acking: then its
		// outcome is on record, and is published again for a request still waiting.
		prior, err := h.finished(ctx, rec)
		if err != nil {
			return err
		}
		if prior != nil {
			return h.notify(prior)
		}
	}
	var receipts []*busv1.Receipt
	if rec.GetApplied() { // late ops are recorded, not pushed
		targets := targetsOf(h.dir.Targets(rec.GetEnvelope().GetChannelId()), rec)
		receipts = h.deliver(ctx, rec, md.Sequence.Stream, targets)
		h.countDeliveries(targets, receipts)
	}
	_, err := h.complete(ctx, rec, md.Sequence.Stream, receipts)
	return err
}

// finished returns the recorded outcome of rec's op written for rec's own command, nil when
// there is none. A record that cannot be decoded counts as none: deliveries repeat under the
// same delivery ids.
func (h *Handler) finished(ctx context.Context, rec *busv1.EventRecorded) (*busv1.OpRecord, error) {
	env := rec.GetEnvelope()
	prior, err := h.record(ctx, env)
	if errors.Is(err, bus.ErrCorruptRecord) {
		h.log.WarnContext(ctx, "op record undecodable; delivering again", "op", env.GetId(), "err", err)
		prior, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	if prior.GetCommandId() == rec.GetCommandId() && prior.GetState() == busv1.OpState_OP_STATE_DONE {
		return prior, nil
	}
	return bus.LookupOutcome(ctx, h.js.Conn(), env.GetChannelId(), env.GetOpId(), rec.GetCommandId(), time.UnixMilli(env.GetRecordedAt()))
}

// notify announces an op's outcome to the waiting ingest request (bus.PublishOutcome).
func (h *Handler) notify(op *busv1.OpRecord) error {
	return bus.PublishOutcome(h.js.Conn(), op, false)
}

// open decodes a domain event and checks its authenticator and its place in the event's chain
// (logsign); an *logsign.IntegrityError when it fails.
func (h *Handler) open(ctx context.Context, subject string, seq uint64, data []byte) (*logsign.Entry, error) {
	e, err := h.cfg.Verifier.Open(subject, seq, data)
	if err != nil || h.cfg.Verifier == nil {
		return e, err
	}
	err = bus.Retry(ctx, brokerBudget, func(ctx context.Context) error {
		return h.recent.Check(ctx, h.cfg.Verifier, h.js.Conn(), bus.EventsStreamOfSubject(subject), e)
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// countDeliveries adds the delivered targets to their tenants' usage. A device and the
// channels it is subscribed to belong to the same tenant (ingest refuses anything else), so
// the device's tenant is the channel's. A domain event delivered again after a crash counts
// again: usage is a meter, not a ledger.
func (h *Handler) countDeliveries(targets []target, receipts []*busv1.Receipt) {
	if h.cfg.Usage == nil {
		return
	}
	for i, r := range receipts {
		if tenant := targets[i].dev.GetTenantId(); r.GetStatus() == busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED && tenant != "" {
			h.cfg.Usage.Add(tenant, 0, 1)
		}
	}
}

// Redrive answers requests to retry the failed targets of a 503 op (core NATS, queue group):
// it delivers the op again to them only, records the new outcome and replies with the op
// record (empty when there was nothing to redrive).
func (h *Handler) Redrive(m *nats.Msg) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), h.cfg.Budget+10*time.Second)
		defer cancel()
		reply, err := h.redrive(ctx, m.Data)
		if err != nil {
			h.log.WarnContext(ctx, "redrive failed", "err", err)
		}
		_ = m.Respond(reply)
	}()
}

func (h *Handler) redrive(ctx context.Context, data []byte) ([]byte, error) {
	req := &busv1.RedriveRequest{}
	if err := proto.Unmarshal(data, req); err != nil {
		return nil, err
	}
	prior, err := h.record(ctx, &busv1.Envelope{ChannelId: req.GetChannelId(), OpId: req.GetOpId()})
	if err != nil || prior == nil || prior.GetCommandId() != req.GetCommandId() ||
		prior.GetState() != busv1.OpState_OP_STATE_DONE || prior.GetEventSeq() == 0 {
		return nil, err
	}
	rec, err := h.loadEvent(ctx, req.GetChannelId(), prior.GetEventSeq())
	if err != nil {
		return nil, err
	}
	var keep, retry []*busv1.Receipt
	var again []target
	for _, r := range prior.GetReceipts() {
		dev := h.dir.Device(r.GetDeviceKey())
		switch {
		case r.GetStatus() == busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED:
			keep = append(keep, r)
		case dev == nil || dev.GetReplacedBy() != "":
			retry = append(retry, failed(r.GetDeviceKey(), r.GetRoute(), r.GetDeliveryId(), "device_gone", int(r.GetAttempts()), h.now()))
		case dev.GetRouteInvalid() != "" && dev.GetChannelType() == r.GetRoute():
			// The provider refused the token, or the webhook answered 410: not sent again
			// until the device's route is set again.
			retry = append(retry, failed(r.GetDeviceKey(), r.GetRoute(), r.GetDeliveryId(), "route_invalid", int(r.GetAttempts()), h.now()))
		default:
			again = append(again, target{dev: dev, route: r.GetRoute(), next: r.GetNextAttemptAt()})
		}
	}
	redriven := h.deliver(ctx, rec, prior.GetEventSeq(), again)
	h.countDeliveries(again, redriven)
	mine := append(append(keep, retry...), redriven...)
	out, err := h.settle(ctx, rec, prior.GetEventSeq(), func(cur *busv1.OpRecord) ([]*busv1.Receipt, bool) {
		return merge(cur.GetReceipts(), mine), true
	})
	if err != nil {
		return nil, err
	}
	if err := h.notify(out); err != nil {
		return nil, err
	}
	return proto.Marshal(out)
}

// deliver pushes one op (the domain event at seq) to targets concurrently and returns a
// receipt per target, in order. A webhook target still failing when the budget ends goes on
// the durable retry schedule (scheduleFirst).
func (h *Handler) deliver(ctx context.Context, rec *busv1.EventRecorded, seq uint64, targets []target) []*busv1.Receipt {
	budgetEnd := h.now().Add(h.cfg.Budget)
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Budget)
	defer cancel()
	receipts := make([]*busv1.Receipt, len(targets))
	type pending struct {
		i   int
		ack jetstream.PubAckFuture
	}
	var inbox []pending
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(h.cfg.WebhookParallel, 1))
	psem := make(chan struct{}, max(h.cfg.ProviderParallel, 1))
	sentAt := h.now()
	env := rec.GetEnvelope()
	// Everything but the delivery id is the same for every target: build it once. Protobuf
	// fields may come in any order, so an inbox message is its delivery id followed by the
	// shared encoding.
	var data map[string]string
	if len(targets) > 0 {
		data = dataMap(rec, "", sentAt.UnixMilli())
		delete(data, "delivery_id")
	}
	var shared []byte
	for i, t := range targets {
		dev, key, route := t.dev, t.dev.GetDeviceKey(), t.route
		id := t.deliveryID(env.GetId())
		switch route {
		case RoutePrivate:
			if shared == nil {
				var err error
				if shared, err = proto.Marshal(&busv1.InboxMessage{ChannelId: env.GetChannelId(), EventId: env.GetEventId(),
					Data: data, SentAt: sentAt.UnixMilli()}); err != nil {
					receipts[i] = failed(key, route, id, "encode_failed", 1, sentAt)
					continue
				}
			}
			msg := protowire.AppendString(protowire.AppendTag(make([]byte, 0, len(shared)+40), 1, protowire.BytesType), id)
			msg = append(msg, shared...)
			f, err := h.js.PublishAsync(bus.InboxSubject(key), msg, jetstream.WithMsgID(id), jetstream.WithExpectStream(bus.StreamInbox),
				jetstream.WithStallWait(h.cfg.Budget))
			if err != nil {
				receipts[i] = failed(key, route, id, "inbox_unavailable", 1, sentAt)
				continue
			}
			inbox = append(inbox, pending{i, f})
		case RouteWebhook:
			secret, err := h.cfg.Secrets.Open(dev.GetWebhookSecret(), webhook.SecretBinding(key))
			if err != nil {
				h.log.ErrorContext(ctx, "webhook secret does not open (wrong or missing --secrets-key-file, or a tampered record); not delivering",
					"device", logctx.Device(key), "err", err)
				receipts[i] = failed(key, route, id, "webhook_secret_unreadable", 0, sentAt)
				continue
			}
			async(&wg, sem, func() {
				mine := maps.Clone(data)
				mine["delivery_id"] = id
				tries := h.hooks.send(ctx, dev.GetProviderToken(), secret, id, env.GetChannelId(), mine)
				last := tries[len(tries)-1]
				r := h.receipt(key, route, id, len(tries), last.why)
				if last.why != "" {
					r.NextAttemptAt = h.afterBudget(ctx, t, rec, seq, r, last, budgetEnd)
				}
				// A short wait: the op's answer waits for this, and the list is best effort.
				h.logAttempts(ctx, key, env, id, tries, r.GetNextAttemptAt(), attemptLogWait)
				receipts[i] = r
			})
		case RouteAPNs, RouteFCM:
			p := h.providers[route]
			if p == nil {
				receipts[i] = failed(key, route, id, "provider_not_configured", 0, sentAt)
				continue
			}
			async(&wg, psem, func() {
				mine := maps.Clone(data)
				mine["delivery_id"] = id
				attempts, reason, invalid := p.send(ctx, dev.GetProviderToken(), rec, mine)
				if invalid {
					h.invalidateRoute(ctx, key, route, dev.GetProviderToken(), reason)
				}
				receipts[i] = h.receipt(key, route, id, attempts, reason)
			})
		case RouteLiveActivity:
			p, _ := h.providers[RouteAPNs].(*apnsSender)
			if p == nil {
				receipts[i] = failed(key, route, id, "provider_not_configured", 0, sentAt)
				continue
			}
			async(&wg, psem, func() {
				attempts, reason, invalid := p.sendActivity(ctx, dev, rec, h.cfg.ActivityType)
				switch {
				case invalid:
					h.dropActivity(ctx, key, rec, reason)
				case reason == "" && rec.GetRoute() == "close":
					h.dropActivity(ctx, key, rec, "ended")
				}
				receipts[i] = h.receipt(key, route, id, attempts, reason)
			})
		default: // validated at registration: unreachable
			receipts[i] = failed(key, route, id, "unknown_route", 0, sentAt)
		}
	}
	for _, p := range inbox {
		key, id := targets[p.i].dev.GetDeviceKey(), targets[p.i].deliveryID(rec.GetEnvelope().GetId())
		var err error
		select {
		case <-p.ack.Ok():
		case err = <-p.ack.Err():
		case <-ctx.Done():
			err = ctx.Err()
		}
		attempts := 1
		if err != nil {
			// Through a leader election: append again, same message id, until the budget ends.
			err = bus.Retry(ctx, h.cfg.Budget, func(ctx context.Context) error {
				attempts++
				_, err := h.js.PublishMsg(ctx, p.ack.Msg(), jetstream.WithMsgID(id), jetstream.WithExpectStream(bus.StreamInbox))
				return err
			})
		}
		if err != nil {
			h.log.WarnContext(ctx, "inbox append failed", "device", logctx.Device(key), "err", err)
			receipts[p.i] = failed(key, RoutePrivate, id, "inbox_unavailable", attempts, h.now())
			continue
		}
		receipts[p.i] = h.receipt(key, RoutePrivate, id, attempts, "")
	}
	wg.Wait()
	countResults(receipts)
	traceTargets(ctx, targets, receipts, sentAt)
	return receipts
}

// traceTargets records a span per target of a traced op, from the start of the delivery to its
// receipt: route, device (logctx.Device), attempts and why it failed.
func traceTargets(ctx context.Context, targets []target, receipts []*busv1.Receipt, began time.Time) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	for i, r := range receipts {
		_, span := tracing.Start(ctx, tracerScope, "deliver to "+targets[i].route, trace.WithTimestamp(began),
			trace.WithAttributes(attribute.String("pushgo.route", targets[i].route), attribute.String("pushgo.device", logctx.Device(r.GetDeviceKey())),
				attribute.String("pushgo.delivery_id", r.GetDeliveryId()), attribute.Int("pushgo.attempts", int(r.GetAttempts()))))
		if r.GetStatus() != busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED {
			span.SetStatus(codes.Error, r.GetReason())
		}
		span.End(trace.WithTimestamp(time.UnixMilli(r.GetAt())))
	}
}

// countResults adds receipts to the deliveries metric.
func countResults(receipts []*busv1.Receipt) {
	for _, r := range receipts {
		result := "failed"
		if r.GetStatus() == busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED {
			result = "delivered"
		}
		metrics.Deliveries.WithLabelValues(r.GetRoute(), result).Inc()
	}
}

// async runs f in a goroutine of wg once sem has room, taken there and not in the caller's
// loop, so that a slow receiver or provider holds no other target back.
func async(wg *sync.WaitGroup, sem chan struct{}, f func()) {
	wg.Go(func() {
		sem <- struct{}{}
		defer func() { <-sem }()
		f()
	})
}

// receipt is the receipt of one target: delivered when why is "", failed with why otherwise.
func (h *Handler) receipt(key, route, id string, attempts int, why string) *busv1.Receipt {
	if why != "" {
		return failed(key, route, id, why, attempts, h.now())
	}
	return &busv1.Receipt{DeviceKey: key, Route: route, Status: busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED,
		DeliveryId: id, Attempts: uint32(attempts), At: h.now().UnixMilli()}
}

// omitted counts the receipts of an op that its record could not hold.
type omitted struct{ delivered, failed uint32 }

// complete records the op's outcome from its receipts, publishes it and returns the record
// written. A 503 goes to pushgo_ops with its receipts; a 200 to the journal, without them.
func (h *Handler) complete(ctx context.Context, rec *busv1.EventRecorded, seq uint64, receipts []*busv1.Receipt) (*busv1.OpRecord, error) {
	env := rec.GetEnvelope()
	op := h.outcome(rec, seq, receipts, omitted{})
	if op.GetOutcome().GetHttpStatus() == http.StatusOK {
		// Journaled and announced without its receipts (nothing retries a delivered target).
		op.Receipts = nil
		if err := h.journal.Write(ctx, op); err != nil {
			return nil, fmt.Errorf("journal outcome of %s: %w", env.GetId(), err)
		}
		err := h.notify(op)
		op.Receipts = receipts
		return op, err
	}
	data, err := h.encodeRecord(op)
	if err != nil {
		return nil, err
	}
	if err := bus.Retry(ctx, brokerBudget, func(ctx context.Context) error {
		_, err := h.ops.Put(ctx, bus.OpKey(env.GetChannelId(), env.GetOpId()), data)
		return err
	}); err != nil {
		return nil, fmt.Errorf("record outcome of %s: %w", env.GetId(), err)
	}
	return op, h.notify(op)
}

// outcome is the op record of rec from its receipts (and those counted in prior, which an
// earlier record of the op left out): 200 when every target received the push, 503
// dispatch_partial_failure otherwise.
func (h *Handler) outcome(rec *busv1.EventRecorded, seq uint64, receipts []*busv1.Receipt, prior omitted) *busv1.OpRecord {
	env := rec.GetEnvelope()
	delivery := &apiv1.Delivery{Targets: uint32(len(receipts)) + prior.delivered + prior.failed,
		Delivered: prior.delivered, Failed: prior.failed}
	for _, r := range receipts {
		if r.GetStatus() == busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED {
			delivery.Delivered++
		} else {
			delivery.Failed++
		}
	}
	state := rec.GetState()
	result := &apiv1.EventOpResult{
		ChannelId:  env.GetChannelId(),
		OpId:       env.GetOpId(),
		EventId:    env.GetEventId(),
		ThingId:    state.ThingId,
		Accepted:   delivery.GetFailed() == 0,
		Applied:    rec.GetApplied(),
		Version:    rec.GetVersion(),
		EventState: state.GetEventState(),
		Delivery:   delivery,
	}
	out := &busv1.Outcome{HttpStatus: http.StatusOK, Result: result}
	if delivery.GetFailed() > 0 {
		out.HttpStatus = http.StatusServiceUnavailable
		out.ErrorCode = "dispatch_partial_failure"
		out.Error = fmt.Sprintf("%d of %d targets did not receive the push; repeat the op_id to retry them", delivery.GetFailed(), delivery.GetTargets())
	}
	op := bus.DoneRecord(env, rec.GetRoute(), rec.GetCommandId(), rec.GetFingerprint(), rec.GetOpCreatedAt(), h.now().UnixMilli(), out)
	op.EventSeq = seq
	op.DeliveredOmitted, op.FailedOmitted = prior.delivered, prior.failed
	op.Receipts = receipts
	return op
}

// encodeRecord encodes op within MaxRecordBytes. An op to a channel of many thousand targets
// has more receipts than one broker message holds: then the delivered receipts are counted
// instead of kept, and if the failed ones alone are still too many, those that do not fit are
// counted too.
func (h *Handler) encodeRecord(op *busv1.OpRecord) ([]byte, error) {
	data, err := proto.Marshal(op)
	limit := h.cfg.MaxRecordBytes
	if err != nil || limit <= 0 || len(data) <= limit {
		return data, err
	}
	var failed []*busv1.Receipt
	for _, r := range op.GetReceipts() {
		if r.GetStatus() == busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED {
			op.DeliveredOmitted++
		} else {
			failed = append(failed, r)
		}
	}
	op.Receipts = nil
	size := proto.Size(op) + 16 // room for the omitted counts growing by a few bytes
	for i, r := range failed {
		n := proto.Size(r) + 4 // tag and length prefix
		if size+n > limit {
			op.FailedOmitted += uint32(len(failed) - i)
			break
		}
		op.Receipts = append(op.Receipts, r)
		size += n
	}
	h.log.Warn("op record too large for one message: receipts counted, not kept", "op", op.GetChannelId()+"."+op.GetOpId(),
		"kept", len(op.GetReceipts()), "delivered_omitted", op.GetDeliveredOmitted(), "failed_omitted", op.GetFailedOmitted())
	return proto.Marshal(op)
}

// record reads an op record; nil when there is none.
func (h *Handler) record(ctx context.Context, env *busv1.Envelope) (*busv1.OpRecord, error) {
	return bus.ReadOpRecord(ctx, h.ops, env.GetChannelId(), env.GetOpId(), brokerBudget)
}

func failed(key, route, id, reason string, attempts int, at time.Time) *busv1.Receipt {
	return &busv1.Receipt{DeviceKey: key, Route: route, Status: busv1.ReceiptStatus_RECEIPT_STATUS_FAILED, Reason: reason,
		DeliveryId: id, Attempts: uint32(attempts), At: at.UnixMilli()}
}

// DeliveryID is the id of the delivery of one op (its domain event id) to one device: 32 hex,
// the same on every attempt.
func DeliveryID(eventMsgID, deviceKey string) string {
	sum := sha256.Sum256([]byte("pushgo/delivery-id\x00" + eventMsgID + "\x00" + deviceKey))
	return hex.EncodeToString(sum[:16])
}
