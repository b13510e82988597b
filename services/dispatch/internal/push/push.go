// Package push turns domain events into pushes and op outcomes. For every domain event of
// PUSHGO_EVENTS it resolves the op's targets, delivers to them and records the op's final
// outcome in pushgo_ops, which is how the waiting ingest request learns its answer.
//
// Targets are not delivered yet: every op completes with delivery {0, 0, 0}. The delivery
// issue adds targets behind deliver without changing how outcomes are recorded.
package push

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// Handler handles domain event messages. It is safe for concurrent use.
type Handler struct {
	ops jetstream.KeyValue
	log *slog.Logger
	now func() int64
}

// New returns a handler recording outcomes in ops.
func New(ops jetstream.KeyValue, log *slog.Logger) *Handler {
	return &Handler{ops: ops, log: log, now: func() int64 { return time.Now().UnixMilli() }}
}

// Handle delivers one domain event and records its op's outcome, then acks. A broker failure
// naks the message for a later redelivery; an undecodable one is terminated and logged.
func (h *Handler) Handle(ctx context.Context, m jetstream.Msg) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rec := &busv1.EventRecorded{}
	if err := proto.Unmarshal(m.Data(), rec); err != nil {
		h.log.Error("undecodable domain event dropped", "subject", m.Subject(), "err", err)
		_ = m.TermWithReason("undecodable domain event")
		return
	}
	if err := h.complete(ctx, rec); err != nil {
		h.log.Warn("domain event will be retried", "op", rec.GetEnvelope().GetId(), "err", err)
		_ = m.NakWithDelay(time.Second)
		return
	}
	if err := m.Ack(); err != nil {
		h.log.Warn("ack domain event", "op", rec.GetEnvelope().GetId(), "err", err)
	}
}

func (h *Handler) complete(ctx context.Context, rec *busv1.EventRecorded) error {
	env := rec.GetEnvelope()
	delivery := &apiv1.Delivery{}
	if rec.GetApplied() {
		delivery = h.deliver(ctx, rec)
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
		out.Error = fmt.Sprintf("%d of %d targets did not receive the push", delivery.GetFailed(), delivery.GetTargets())
	}
	now := h.now()
	data, err := proto.Marshal(bus.DoneRecord(env, rec.GetRoute(), rec.GetCommandId(), rec.GetFingerprint(), rec.GetOpCreatedAt(), now, out))
	if err != nil {
		return err
	}
	if _, err := h.ops.Put(ctx, bus.OpKey(env.GetChannelId(), env.GetOpId()), data); err != nil {
		return fmt.Errorf("record outcome of %s: %w", env.GetId(), err)
	}
	return nil
}

// deliver pushes an applied op to its targets. No target kind exists yet.
func (h *Handler) deliver(context.Context, *busv1.EventRecorded) *apiv1.Delivery {
	return &apiv1.Delivery{}
}
