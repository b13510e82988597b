// Package commands turns commands from PUSHGO_COMMANDS into domain events: load the event's
// head, decide with the pure fold, append with optimistic concurrency, and record rejections
// as op outcomes. Every step is idempotent, so a command delivered twice (a redelivery after a
// crash, or a republish by a repeated request) is applied at most once.
package commands

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logsign"
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
	store   *natsstore.Store
	ops     jetstream.KeyValue
	horizon uint64
	opts    Options
	log     *slog.Logger
	now     func() int64
}

// New returns a handler appending to store and recording rejections in ops. Commands below
// stream sequence horizon may have been folded by an earlier consumer (see lifecycle's
// consumer setup), so each of them is checked against its event's history first.
func New(store *natsstore.Store, ops jetstream.KeyValue, horizon uint64, opts Options, log *slog.Logger) *Handler {
	opts.GiveUpAfter = cmp.Or(max(opts.GiveUpAfter, 0), DefaultGiveUpAfter)
	opts.RetryDelay = cmp.Or(max(opts.RetryDelay, 0), DefaultRetryDelay)
	return &Handler{store: store, ops: ops, horizon: horizon, opts: opts, log: log, now: func() int64 { return time.Now().UnixMilli() }}
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
	delivered, seq := uint64(1), uint64(0)
	if err == nil {
		delivered, seq = md.NumDelivered, md.Sequence.Stream
	}
	// A redelivered or republished command may have been applied already by an instance that
	// died before acking, and other ops of the event may have followed it since; so may one
	// that was in the stream before the consumer was created.
	suspect := delivered > 1 || m.Headers().Get(bus.HeaderRedrive) != "" || seq < h.horizon
	if err := h.process(ctx, cmd, suspect); err != nil {
		if permanent(err) && delivered >= uint64(h.opts.GiveUpAfter) {
			h.giveUp(ctx, m, cmd, delivered, err)
			return
		}
		delay := min(h.opts.RetryDelay<<min(delivered-1, 5), maxBackoff)
		h.log.Warn("command will be retried", "op", cmd.GetEnvelope().GetId(), "delivered", delivered, "in", delay, "err", err)
		_ = m.NakWithDelay(delay)
		return
	}
	if err := m.Ack(); err != nil {
		h.log.Warn("ack command", "op", cmd.GetEnvelope().GetId(), "err", err)
	}
}

func (h *Handler) process(ctx context.Context, cmd *busv1.EventCommand, suspect bool) error {
	env := cmd.GetEnvelope()
	ch, ev := env.GetChannelId(), env.GetEventId()
	if suspect {
		done, err := h.alreadyHandled(ctx, cmd)
		if err != nil || done {
			return err
		}
	}
	c := event.Command{Route: event.Route(cmd.GetRoute()), ChannelID: ch, EventID: ev, Fields: natsstore.FieldsFromProto(cmd.GetFields())}
	for range maxConflicts {
		head, err := h.store.Head(ctx, ch, ev)
		if errors.Is(err, logsign.ErrIntegrity) {
			return h.integrity(ctx, cmd, err)
		}
		if err != nil {
			return err
		}
		var headRec *busv1.EventRecorded
		if head != nil {
			headRec = head.Rec
		}
		if headRec != nil && headRec.GetCommandId() == cmd.GetCommandId() {
			return nil // our own earlier append (e.g. a retried publish that had landed)
		}
		now := h.now()
		d, err := event.Decide(natsstore.StateFromProto(headRec.GetState()), c, now)
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
		_, err = h.store.Append(ctx, rec, head)
		if errors.Is(err, natsstore.ErrConflict) {
			continue
		}
		return err
	}
	return errTooManyConflicts
}

// permanent reports an error that retrying the command will not cure.
func permanent(err error) bool {
	return !bus.Transient(err) && !errors.Is(err, errTooManyConflicts) && !errors.Is(err, context.Canceled)
}

// giveUp answers a command that failed the same non-transient way on every delivery: its op
// gets the outcome 500 internal_error, and the message is terminated, so that it neither loops
// forever nor holds back the trim of folded commands (which stops at the first unacknowledged
// one). The detail goes to the log only. A repeat of the op retries the command.
func (h *Handler) giveUp(ctx context.Context, m jetstream.Msg, cmd *busv1.EventCommand, delivered uint64, cause error) {
	env := cmd.GetEnvelope()
	h.log.Error("command failed on every delivery; its op is answered internal_error", "op", env.GetId(),
		"delivered", delivered, "err", cause)
	// An outcome already recorded for this command stands (the op was finished elsewhere),
	// unless it is an earlier give-up: the retrying request waits for a new record.
	prior, err := bus.ReadOpRecord(ctx, h.ops, env.GetChannelId(), env.GetOpId(), brokerBudget)
	if err == nil && prior.GetCommandId() == cmd.GetCommandId() && prior.GetState() == busv1.OpState_OP_STATE_DONE && !bus.GaveUp(prior) {
		_ = m.TermWithReason("already has an outcome")
		return
	}
	rec := bus.DoneRecord(env, cmd.GetRoute(), cmd.GetCommandId(), cmd.GetFingerprint(), cmd.GetOpCreatedAt(), h.now(),
		&busv1.Outcome{HttpStatus: http.StatusInternalServerError, ErrorCode: bus.CodeGaveUp,
			Error: "the op could not be applied; repeat it with the same op_id to try again"})
	if err := h.put(ctx, rec); err != nil {
		h.log.Warn("command will be retried", "op", env.GetId(), "delivered", delivered, "in", maxBackoff, "err", err)
		_ = m.NakWithDelay(maxBackoff)
		return
	}
	_ = m.TermWithReason("gave up: internal_error recorded")
}

// alreadyHandled reports whether this command has an outcome or an entry in the event's
// history. An outcome it was given up on (internal_error) does not count: its repeat is here to
// retry it.
func (h *Handler) alreadyHandled(ctx context.Context, cmd *busv1.EventCommand) (bool, error) {
	env := cmd.GetEnvelope()
	rec, err := bus.ReadOpRecord(ctx, h.ops, env.GetChannelId(), env.GetOpId(), brokerBudget)
	if err != nil {
		return false, err
	}
	if rec.GetCommandId() == cmd.GetCommandId() && rec.GetState() == busv1.OpState_OP_STATE_DONE && !bus.GaveUp(rec) {
		return true, nil
	}
	return h.store.Contains(ctx, env.GetChannelId(), env.GetEventId(), cmd.GetCommandId())
}

// integrity answers an op on an event whose log head failed its checks (logsign): the entry
// is not folded on, the failure is logged with its stream sequence, and the op's outcome is
// 500 integrity_error. Nothing is appended, so nothing is pushed.
func (h *Handler) integrity(ctx context.Context, cmd *busv1.EventCommand, cause error) error {
	env := cmd.GetEnvelope()
	ie, _ := errors.AsType[*logsign.IntegrityError](cause)
	h.log.Error("event log entry failed its integrity check; op refused", "op", env.GetId(),
		"subject", ie.Subject, "seq", ie.Seq, "reason", ie.Reason)
	rec := bus.DoneRecord(env, cmd.GetRoute(), cmd.GetCommandId(), cmd.GetFingerprint(), cmd.GetOpCreatedAt(), h.now(),
		&busv1.Outcome{HttpStatus: http.StatusInternalServerError, ErrorCode: bus.CodeIntegrity,
			Error: "the event's log failed its integrity check; the operator has been alerted"})
	return h.put(ctx, rec)
}

// reject records a rule violation as the op's outcome. Rejected ops leave no trace in the
// event's history.
func (h *Handler) reject(ctx context.Context, cmd *busv1.EventCommand, rerr *event.RuleError, now int64) error {
	env := cmd.GetEnvelope()
	rec := bus.DoneRecord(env, cmd.GetRoute(), cmd.GetCommandId(), cmd.GetFingerprint(), cmd.GetOpCreatedAt(), now,
		&busv1.Outcome{HttpStatus: uint32(rerr.Status), ErrorCode: rerr.Code, Error: rerr.Msg})
	return h.put(ctx, rec)
}

// put writes an op's outcome record.
func (h *Handler) put(ctx context.Context, rec *busv1.OpRecord) error {
	data, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	if err := bus.Retry(ctx, brokerBudget, func(ctx context.Context) error {
		_, err := h.ops.Put(ctx, bus.OpKey(rec.GetChannelId(), rec.GetOpId()), data)
		return err
	}); err != nil {
		return fmt.Errorf("record outcome of %s.%s: %w", rec.GetChannelId(), rec.GetOpId(), err)
	}
	return nil
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
