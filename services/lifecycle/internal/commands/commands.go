// Package commands turns commands from PUSHGO_COMMANDS into domain events: load the event's
// head, tell a repeat from a new op with the head's op filter, decide with the pure fold,
// append with optimistic concurrency, and answer what the log cannot: rejections, repeats and
// conflicts are published as op outcomes on core NATS (bus.OutcomeSubject) for the waiting
// ingest request, and nothing is stored for them (docs/scale.md). Every step is idempotent, so
// a command delivered twice (a redelivery after a crash, or a repeated request) is applied at
// most once.
package commands

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logctx"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/tracing"
	"pushgo.dev/gateway/services/lifecycle/internal/event"
	"pushgo.dev/gateway/services/lifecycle/internal/natsstore"
)

// maxConflicts bounds the load-decide-append loop of one delivery. Commands of one event are
// serialised per instance, so conflicts only come from another instance; after this many the
// command is retried later.
const maxConflicts = 32

// brokerBudget bounds the retries of one broker call through an outage; the handler's
// context (20 s) bounds the whole command.
const brokerBudget = 15 * time.Second

// maxBackoff caps the delay before a failed command is redelivered.
const maxBackoff = 30 * time.Second

// Defaults of Options.
const (
	DefaultGiveUpAfter = 8
	DefaultRetryDelay  = time.Second
)

// Options tunes how a Handler retries commands that fail.
type Options struct {
	// GiveUpAfter is how many deliveries of a command failing with a non-transient error (a
	// bug, corrupt stored data) are tried before its op is answered 500 internal_error and the
	// command is terminated: 8 by default, about 1.5 min with the delays doubling from 1 s, so
	// that an error taken for permanent by mistake during an outage does not end an op.
	// Transient failures (the broker away, concurrent appends) are retried for as long as
	// they last.
	GiveUpAfter int
	// RetryDelay is the delay before the first redelivery of a failed command; it doubles with
	// every delivery up to 30 s.
	RetryDelay time.Duration
}

// errTooManyConflicts is transient: the message is redelivered.
var errTooManyConflicts = errors.New("too many concurrent appends to one event")

// Handler handles command messages. It is safe for concurrent use by the consume workers.
type Handler struct {
	store *natsstore.Store
	nc    *nats.Conn
	// ops holds the records that the log cannot replace: 503 receipts (and, in a store from
	// before the journal, every outcome of the idempotency window).
	ops    jetstream.KeyValue
	window time.Duration
	opts   Options
	log    *slog.Logger
	now    func() int64
}

// New returns a handler appending to store. Repeats of applied ops are answered from ops (503
// records) and the outcome journal read through nc; window is the idempotency window.
func New(store *natsstore.Store, nc *nats.Conn, ops jetstream.KeyValue, window time.Duration, opts Options, log *slog.Logger) *Handler {
	opts.GiveUpAfter = cmp.Or(max(opts.GiveUpAfter, 0), DefaultGiveUpAfter)
	opts.RetryDelay = cmp.Or(max(opts.RetryDelay, 0), DefaultRetryDelay)
	return &Handler{store: store, nc: nc, ops: ops, window: window, opts: opts, log: log, now: func() int64 { return time.Now().UnixMilli() }}
}

// Handle processes one message and acks it, or naks it with a growing delay when a failure
// stopped it. A command that fails with a non-transient error on GiveUpAfter deliveries is
// given up on (giveUp). An undecodable message is terminated and logged.
func (h *Handler) Handle(ctx context.Context, m jetstream.Msg) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := &busv1.EventCommand{}
	if err := proto.Unmarshal(m.Data(), cmd); err != nil {
		h.log.Error("undecodable command dropped", "subject", m.Subject(), "err", err)
		_ = m.TermWithReason("undecodable command")
		return
	}
	md, err := m.Metadata()
	delivered := uint64(1)
	if err == nil {
		delivered = md.NumDelivered
	}
	// The request's id and trace come with the command (tracing.Headers), and go on with the
	// domain event it appends.
	env := cmd.GetEnvelope()
	ctx = logctx.WithOp(tracing.FromHeaders(ctx, m.Headers()), env.GetChannelId(), env.GetEventId(), env.GetOpId())
	var span trace.Span
	if tracing.Enabled() {
		ctx, span = tracing.Start(ctx, "pushgo/lifecycle", "fold "+cmd.GetRoute(), trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(attribute.String("pushgo.channel_id", env.GetChannelId()), attribute.String("pushgo.event_id", env.GetEventId()),
				attribute.String("pushgo.op_id", env.GetOpId()), attribute.Int64("messaging.delivery_count", int64(delivered))))
		defer span.End()
	}
	if err := h.process(ctx, cmd); err != nil {
		if span != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		if permanent(err) && delivered >= uint64(h.opts.GiveUpAfter) {
			h.giveUp(ctx, m, cmd, delivered, err)
			return
		}
		delay := min(h.opts.RetryDelay<<min(delivered-1, 5), maxBackoff)
		h.log.WarnContext(ctx, "command will be retried", "op", cmd.GetEnvelope().GetId(), "delivered", delivered, "in", delay, "err", err)
		_ = m.NakWithDelay(delay)
		return
	}
	if err := m.Ack(); err != nil {
		h.log.WarnContext(ctx, "ack command", "op", cmd.GetEnvelope().GetId(), "err", err)
	}
}

func (h *Handler) process(ctx context.Context, cmd *busv1.EventCommand) error {
	env := cmd.GetEnvelope()
	ch, ev := env.GetChannelId(), env.GetEventId()
	c := event.Command{Route: event.Route(cmd.GetRoute()), ChannelID: ch, EventID: ev, Fields: natsstore.FieldsFromProto(cmd.GetFields())}
	for range maxConflicts {
		head, err := h.store.Head(ctx, ch, ev)
		if errors.Is(err, logsign.ErrIntegrity) {
			return h.integrity(ctx, cmd, err)
		}
		if err != nil {
			return err
		}
		// The op may be in the log already: applied by an earlier request with this op_id
		// within the idempotency window (beyond it the op_id is free again, and a create's
		// replay meets its event: event_exists), or by this very command on a delivery whose
		// ack was lost.
		prior, err := h.store.FindOp(ctx, head, env.GetOpId())
		if err != nil {
			return err
		}
		now := h.now()
		if prior != nil && (prior.Rec.GetCommandId() == cmd.GetCommandId() ||
			now-prior.Rec.GetEnvelope().GetRecordedAt() <= h.window.Milliseconds()) {
			return h.repeat(ctx, cmd, prior)
		}
		var state *apiv1.Event
		if head != nil {
			state = head.Rec.GetState()
		}
		d, err := event.Decide(natsstore.StateFromProto(state), c, now)
		if rerr, ok := errors.AsType[*event.RuleError](err); ok {
			return h.reject(ctx, cmd, rerr, now)
		}
		if err != nil {
			return err
		}
		rec, err := recorded(cmd, d, now)
		if err != nil {
			return err
		}
		if rec.OpFilter, err = h.store.NextFilter(ctx, head, now, h.window); err != nil {
			return err
		}
		_, err = h.store.Append(ctx, rec, head)
		if errors.Is(err, natsstore.ErrConflict) {
			continue
		}
		return err
	}
	return errTooManyConflicts
}

// repeat answers a command whose op_id the event's log already holds in prior. Another route
// or body is a conflict. The same request is answered with the op's recorded outcome: its 503
// record, or the journal's entry for it; when neither has it yet, dispatch is still at the op,
// and its outcome reaches the waiting request when it finishes. The command that wrote prior
// itself (redelivered after its ack was lost) needs no answer: dispatch gives it.
func (h *Handler) repeat(ctx context.Context, cmd *busv1.EventCommand, prior *logsign.Entry) error {
	env, p := cmd.GetEnvelope(), prior.Rec
	if p.GetRoute() != cmd.GetRoute() || p.GetFingerprint() != cmd.GetFingerprint() {
		return h.publish(bus.DoneRecord(env, cmd.GetRoute(), cmd.GetCommandId(), cmd.GetFingerprint(), cmd.GetOpCreatedAt(), h.now(),
			&busv1.Outcome{HttpStatus: http.StatusConflict, ErrorCode: "op_id_conflict",
				Error: fmt.Sprintf("op_id %q was already used for a different request in this channel", env.GetOpId())}), false)
	}
	if p.GetCommandId() == cmd.GetCommandId() {
		return nil
	}
	rec, err := bus.ReadOpRecord(ctx, h.ops, env.GetChannelId(), env.GetOpId(), brokerBudget)
	if errors.Is(err, bus.ErrCorruptRecord) {
		h.log.WarnContext(ctx, "op record undecodable; looking in the journal", "op", env.GetId(), "err", err)
		rec, err = nil, nil
	}
	if err != nil {
		return err
	}
	if rec.GetState() != busv1.OpState_OP_STATE_DONE || bus.GaveUp(rec) {
		rec, err = bus.LookupOutcome(ctx, h.nc, env.GetChannelId(), env.GetOpId(), p.GetCommandId(),
			time.UnixMilli(p.GetEnvelope().GetRecordedAt()))
		if err != nil || rec == nil {
			return err
		}
	}
	return h.publish(rec, true)
}

// permanent reports an error that retrying the command will not cure.
func permanent(err error) bool {
	return !bus.Transient(err) && !errors.Is(err, errTooManyConflicts) && !errors.Is(err, context.Canceled)
}

// giveUp answers a command that failed the same non-transient way on every delivery: its op
// gets the outcome 500 internal_error, and the message is terminated, so that it neither loops
// forever nor holds back the trim of folded commands (which stops at the first unacknowledged
// one). The detail goes to the log only. Nothing is stored: a repeat of the op is a new try.
func (h *Handler) giveUp(ctx context.Context, m jetstream.Msg, cmd *busv1.EventCommand, delivered uint64, cause error) {
	env := cmd.GetEnvelope()
	h.log.ErrorContext(ctx, "command failed on every delivery; its op is answered internal_error", "op", env.GetId(),
		"delivered", delivered, "err", cause)
	rec := bus.DoneRecord(env, cmd.GetRoute(), cmd.GetCommandId(), cmd.GetFingerprint(), cmd.GetOpCreatedAt(), h.now(),
		&busv1.Outcome{HttpStatus: http.StatusInternalServerError, ErrorCode: bus.CodeGaveUp,
			Error: "the op could not be applied; repeat it with the same op_id to try again"})
	if err := h.publish(rec, false); err != nil {
		h.log.WarnContext(ctx, "command will be retried", "op", env.GetId(), "delivered", delivered, "in", maxBackoff, "err", err)
		_ = m.NakWithDelay(maxBackoff)
		return
	}
	_ = m.TermWithReason("gave up: internal_error answered")
}

// integrity answers an op on an event whose log head failed its checks (logsign): the entry
// is not folded on, the failure is logged with its stream sequence, and the op's outcome is
// 500 integrity_error. Nothing is appended, so nothing is pushed.
func (h *Handler) integrity(ctx context.Context, cmd *busv1.EventCommand, cause error) error {
	env := cmd.GetEnvelope()
	ie, _ := errors.AsType[*logsign.IntegrityError](cause)
	h.log.ErrorContext(ctx, "event log entry failed its integrity check; op refused", "op", env.GetId(),
		"subject", ie.Subject, "seq", ie.Seq, "reason", ie.Reason)
	rec := bus.DoneRecord(env, cmd.GetRoute(), cmd.GetCommandId(), cmd.GetFingerprint(), cmd.GetOpCreatedAt(), h.now(),
		&busv1.Outcome{HttpStatus: http.StatusInternalServerError, ErrorCode: bus.CodeIntegrity,
			Error: "the event's log failed its integrity check; the operator has been alerted"})
	return h.publish(rec, false)
}

// reject answers a rule violation. Rejected ops leave no trace: a repeat is judged again, and
// the facts it was judged on do not change (docs/scale.md).
func (h *Handler) reject(ctx context.Context, cmd *busv1.EventCommand, rerr *event.RuleError, now int64) error {
	env := cmd.GetEnvelope()
	rec := bus.DoneRecord(env, cmd.GetRoute(), cmd.GetCommandId(), cmd.GetFingerprint(), cmd.GetOpCreatedAt(), now,
		&busv1.Outcome{HttpStatus: uint32(rerr.Status), ErrorCode: rerr.Code, Error: rerr.Msg})
	return h.publish(rec, false)
}

// publish announces an op's outcome to the waiting ingest request (bus.PublishOutcome).
func (h *Handler) publish(rec *busv1.OpRecord, recorded bool) error {
	return bus.PublishOutcome(h.nc, rec, recorded)
}

// recorded builds the domain event of an accepted command.
func recorded(cmd *busv1.EventCommand, d event.Decision, now int64) (*busv1.EventRecorded, error) {
	env := cmd.GetEnvelope()
	state, err := natsstore.StateToProto(d.State)
	if err != nil {
		return nil, err
	}
	return &busv1.EventRecorded{
		Envelope: &busv1.Envelope{
			Id:            bus.EventMsgID(env.GetChannelId(), env.GetOpId(), cmd.GetCommandId()),
			Type:          eventType(event.Route(cmd.GetRoute()), d.Applied),
			ChannelId:     env.GetChannelId(),
			EventId:       env.GetEventId(),
			OpId:          env.GetOpId(),
			RecordedAt:    now,
			SchemaVersion: bus.SchemaVersion,
		},
		Route:       cmd.GetRoute(),
		CommandId:   cmd.GetCommandId(),
		Fingerprint: cmd.GetFingerprint(),
		Applied:     d.Applied,
		Version:     d.Version,
		Fields:      cmd.GetFields(),
		State:       state,
		OpCreatedAt: cmd.GetOpCreatedAt(),
	}, nil
}

func eventType(r event.Route, applied bool) string {
	switch {
	case !applied:
		return "event.update_ignored"
	case r == event.Create:
		return "event.created"
	case r == event.Close:
		return "event.closed"
	default:
		return "event.updated"
	}
}
