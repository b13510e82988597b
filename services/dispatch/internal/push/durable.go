package push

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logctx"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/webhook"
)

// Durable webhook retries (DESIGN.md §10.3). A webhook target still failing when its op's
// budget ends is scheduled in PUSHGO_RETRIES (package retryq) for the first delay of the
// schedule after the budget's end (or the receiver's Retry-After, when longer); RetryDue makes
// each attempt when it comes due, schedules the next one after a failure, and rewrites the
// op's record (settle), so that the op's outcome turns 200 once every target has the push and
// a repeat of its op_id answers that. A 410 Gone disables the endpoint (route_invalid) and ends
// its schedule. Every attempt, within the budget or scheduled, is kept per device in
// PUSHGO_ATTEMPTS (logAttempts), which POST /channel/device/attempts lists.

// afterBudget deals with webhook target t that failed within the budget, with r its receipt
// and last its last attempt, and returns when its next attempt is due (Unix ms), 0 for none.
func (h *Handler) afterBudget(ctx context.Context, t target, rec *busv1.EventRecorded, seq uint64, r *busv1.Receipt, last hookAttempt, budgetEnd time.Time) int64 {
	if last.status == http.StatusGone {
		h.invalidateRoute(ctx, t.dev.GetDeviceKey(), RouteWebhook, t.dev.GetProviderToken(), "webhook_gone")
		return 0
	}
	q := h.cfg.Retries
	if q == nil || !durable(last) {
		return 0
	}
	if t.next != 0 {
		return t.next // a redrive: the delivery is on the schedule already
	}
	delay, ok := q.Schedule().Delay(0)
	if !ok {
		return 0
	}
	env := rec.GetEnvelope()
	return h.schedule(ctx, &busv1.RetryTask{ChannelId: env.GetChannelId(), OpId: env.GetOpId(), CommandId: rec.GetCommandId(),
		EventSeq: seq, DeviceKey: t.dev.GetDeviceKey(), DeliveryId: r.GetDeliveryId(), Attempts: r.GetAttempts()},
		budgetEnd.Add(max(delay, last.wait)))
}

// schedule writes task for at and returns the Unix ms it is due, 0 when it could not be
// written (logged: the op stays 503, and its repeat retries the target).
func (h *Handler) schedule(ctx context.Context, task *busv1.RetryTask, at time.Time) int64 {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), brokerBudget)
	defer cancel()
	due, err := h.cfg.Retries.Add(ctx, task, at)
	if err != nil {
		h.log.WarnContext(ctx, "webhook retry not scheduled; a repeat of the op retries it", "delivery", task.GetDeliveryId(),
			"device", logctx.Device(task.GetDeviceKey()), "err", err)
		return 0
	}
	return due.UnixMilli()
}

// RetryDue makes the scheduled attempt task of a webhook delivery (retryq.Queue.Consume) and
// records it. Nothing is sent when the op's record says the target has the push already (a
// repeat of the op delivered it), when the record belongs to another command, or when the
// device is gone or routed elsewhere. An error means the attempt's outcome could not be
// recorded; the task is then tried again.
func (h *Handler) RetryDue(ctx context.Context, task *busv1.RetryTask) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.WebhookTimeout+2*brokerBudget)
	defer cancel()
	id, key := task.GetDeliveryId(), task.GetDeviceKey()
	prior, err := h.record(ctx, &busv1.Envelope{ChannelId: task.GetChannelId(), OpId: task.GetOpId()})
	if err != nil && !errors.Is(err, bus.ErrCorruptRecord) {
		return err
	}
	if prior != nil && prior.GetCommandId() != task.GetCommandId() {
		return nil
	}
	for _, r := range prior.GetReceipts() {
		if r.GetDeliveryId() == id && r.GetRoute() == RouteWebhook && r.GetStatus() == busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED {
			return nil
		}
	}
	rec, err := h.loadEvent(ctx, task.GetChannelId(), task.GetEventSeq())
	if ie, ok := errors.AsType[*logsign.IntegrityError](err); ok {
		h.log.ErrorContext(ctx, "event log entry failed its integrity check; webhook retry dropped", "subject", ie.Subject, "seq", ie.Seq, "reason", ie.Reason)
		return nil
	}
	if err != nil {
		return err
	}
	attempts := int(task.GetAttempts())
	var why string
	var next int64
	dev := h.dir.Device(key)
	switch {
	case dev == nil || dev.GetReplacedBy() != "":
		why = "device_gone"
	case dev.GetChannelType() != RouteWebhook:
		why = "route_changed"
	case dev.GetRouteInvalid() != "":
		why = "route_invalid"
	}
	if why == "" {
		why, next = h.retryOnce(ctx, task, dev, rec)
		attempts++
	}
	if why == "" {
		h.countDeliveries([]target{{dev: dev}}, []*busv1.Receipt{{Status: busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED}})
	}
	r := h.receipt(key, RouteWebhook, id, attempts, why)
	r.NextAttemptAt = next
	countResults([]*busv1.Receipt{r})
	_, err = h.settle(ctx, rec, task.GetEventSeq(), func(cur *busv1.OpRecord) ([]*busv1.Receipt, bool) {
		if cur == nil || cur.GetCommandId() != task.GetCommandId() {
			return nil, false // the record expired: nothing to turn 200
		}
		return merge(cur.GetReceipts(), []*busv1.Receipt{r}), true
	})
	return err
}

// retryOnce makes one scheduled attempt to dev's webhook, schedules the next one when it
// failed and the schedule goes on, and logs it. It returns why it failed ("" when delivered)
// and when the next attempt is due (Unix ms, 0 for none).
func (h *Handler) retryOnce(ctx context.Context, task *busv1.RetryTask, dev *busv1.DeviceRecord, rec *busv1.EventRecorded) (string, int64) {
	id, key, env := task.GetDeliveryId(), task.GetDeviceKey(), rec.GetEnvelope()
	secret, err := h.cfg.Secrets.Open(dev.GetWebhookSecret(), webhook.SecretBinding(key))
	if err != nil {
		h.log.ErrorContext(ctx, "webhook secret does not open; scheduled retry not sent", "device", logctx.Device(key), "err", err)
		return "webhook_secret_unreadable", 0
	}
	body, err := hookBody(id, env.GetChannelId(), dataMap(rec, id, h.now().UnixMilli()))
	if err != nil {
		return "encode_failed", 0
	}
	a := h.hooks.try(ctx, dev.GetProviderToken(), secret, id, body)
	var next int64
	switch {
	case a.status == http.StatusGone:
		h.invalidateRoute(ctx, key, RouteWebhook, dev.GetProviderToken(), "webhook_gone")
	case durable(a):
		if d, ok := h.cfg.Retries.Schedule().Delay(int(task.GetStep()) + 1); ok {
			again := proto.CloneOf(task)
			again.Step++
			again.Attempts++
			next = h.schedule(ctx, again, h.now().Add(max(d, a.wait)))
		}
	}
	h.logAttempts(ctx, key, env, id, []hookAttempt{a}, next, bus.PerTry)
	return a.why, next
}

// logAttempts keeps the webhook attempts tries of delivery id to device key in
// PUSHGO_ATTEMPTS, the last one with when the next is due, waiting at most wait for the broker.
// Best effort: a failure is logged, and costs only the list's completeness.
func (h *Handler) logAttempts(ctx context.Context, key string, env *busv1.Envelope, id string, tries []hookAttempt, next int64, wait time.Duration) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	for i, a := range tries {
		la := &busv1.DeliveryAttempt{DeliveryId: id, ChannelId: env.GetChannelId(), EventId: env.GetEventId(), OpId: env.GetOpId(),
			At: a.at.UnixMilli(), Delivered: a.why == "", Status: uint32(a.status), LatencyMs: uint32(a.latency.Milliseconds()), Error: a.why}
		if i == len(tries)-1 {
			la.NextAttemptAt = next
		}
		data, err := proto.Marshal(la)
		if err == nil {
			_, err = h.js.Publish(ctx, bus.AttemptSubject(key), data, jetstream.WithExpectStream(bus.StreamAttempts))
		}
		if err != nil {
			h.log.WarnContext(ctx, "webhook attempt not recorded", "device", logctx.Device(key), "delivery", id, "err", err)
			return
		}
	}
}

// merge returns cur with each receipt replaced by the one of mine for the same target (device
// and route), unless cur's says delivered and mine's does not: a delivery is never undone by
// a writer that read the record before it. Receipts of mine for targets cur lacks are added.
func merge(cur, mine []*busv1.Receipt) []*busv1.Receipt {
	type tk struct{ key, route string }
	byTarget := make(map[tk]*busv1.Receipt, len(mine))
	for _, r := range mine {
		byTarget[tk{r.GetDeviceKey(), r.GetRoute()}] = r
	}
	out := make([]*busv1.Receipt, 0, max(len(cur), len(mine)))
	for _, c := range cur {
		k := tk{c.GetDeviceKey(), c.GetRoute()}
		m, ok := byTarget[k]
		delete(byTarget, k)
		if !ok || (c.GetStatus() == busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED && m.GetStatus() != busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED) {
			out = append(out, c)
			continue
		}
		out = append(out, m)
	}
	for _, m := range mine { // in mine's order
		if _, left := byTarget[tk{m.GetDeviceKey(), m.GetRoute()}]; left {
			out = append(out, m)
		}
	}
	return out
}

// settle rewrites the op record of rec (the domain event at seq) with the receipts change
// computes from the record as it is now (nil when there is none): a compare-and-set, computed
// again on a conflict, so that a redrive and the scheduled retries of one op finishing at once
// each keep the others' results. change's false writes nothing. It returns the record written
// (the current one when nothing was).
func (h *Handler) settle(ctx context.Context, rec *busv1.EventRecorded, seq uint64, change func(cur *busv1.OpRecord) ([]*busv1.Receipt, bool)) (*busv1.OpRecord, error) {
	env := rec.GetEnvelope()
	key := bus.OpKey(env.GetChannelId(), env.GetOpId())
	for range 10 {
		var cur *busv1.OpRecord
		var rev uint64
		err := bus.Retry(ctx, brokerBudget, func(ctx context.Context) error {
			cur, rev = nil, 0
			e, err := h.ops.Get(ctx, key)
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			rev, cur = e.Revision(), &busv1.OpRecord{}
			if err := proto.Unmarshal(e.Value(), cur); err != nil {
				h.log.WarnContext(ctx, "op record undecodable; rewriting it", "op", key, "err", err)
				cur = nil
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read op record %s: %w", key, err)
		}
		receipts, ok := change(cur)
		if !ok {
			return cur, nil
		}
		op := h.outcome(rec, seq, receipts, omitted{delivered: cur.GetDeliveredOmitted(), failed: cur.GetFailedOmitted()})
		data, err := h.encodeRecord(op)
		if err != nil {
			return nil, err
		}
		err = bus.Retry(ctx, brokerBudget, func(ctx context.Context) error {
			var err error
			if rev == 0 {
				_, err = h.ops.Create(ctx, key, data)
			} else {
				_, err = h.ops.Update(ctx, key, data, rev)
			}
			return err
		})
		if err == nil {
			return op, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, fmt.Errorf("record outcome of %s: %w", env.GetId(), err)
		}
	}
	return nil, fmt.Errorf("record outcome of %s: the record changed on every try", env.GetId())
}

// loadEvent reads and opens the domain event at seq of channelID's events stream.
func (h *Handler) loadEvent(ctx context.Context, channelID string, seq uint64) (*busv1.EventRecorded, error) {
	var msg *jetstream.RawStreamMsg
	err := bus.Retry(ctx, brokerBudget, func(ctx context.Context) error {
		var err error
		msg, err = h.events[h.cfg.Layout.Of(channelID)].GetMsg(ctx, seq)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load domain event %d: %w", seq, err)
	}
	e, err := h.open(ctx, msg.Subject, msg.Sequence, msg.Data)
	if err != nil {
		return nil, err
	}
	return e.Rec, nil
}
