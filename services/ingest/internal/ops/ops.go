// Package ops runs event ops to their outcome for ingest (DESIGN.md §4, §5): it creates the op
// record in pushgo_ops (the idempotency key), publishes the command, and waits for the outcome
// that lifecycle or dispatch writes into the record. Outcomes arrive on one core NATS
// subscription per instance on the bucket's subjects and are routed in memory to the waiting
// requests: no consumer, subscription or goroutine is created per request.
package ops

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Op is a validated event op ready to run.
type Op struct {
	Route       string // create, update or close
	ChannelID   string
	OpID        string
	EventID     string
	Fingerprint string
	Fields      *apiv1.EventFields
}

// Config tunes a Submitter.
type Config struct {
	// DispatchWait is how long a request waits for its outcome before answering 503
	// dispatch_timeout (the op still completes; a repeat returns its outcome).
	DispatchWait time.Duration
	// RetryBudget is how long a broker call is retried with the same idempotency key before
	// the request is answered 503 unavailable; it must outlast a leader election.
	RetryBudget time.Duration
}

// Submitter runs ops. It is safe for concurrent use; Close it to drop its subscription.
type Submitter struct {
	cfg Config
	nc  *nats.Conn
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	sub *nats.Subscription
	log *slog.Logger

	mu      sync.Mutex
	waiters map[string][]chan *busv1.OpRecord
}

// New subscribes to op record updates and returns a ready Submitter.
func New(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cfg Config, log *slog.Logger) (*Submitter, error) {
	kv, err := js.KeyValue(ctx, bus.BucketOps)
	if err != nil {
		return nil, fmt.Errorf("ops bucket: %w", err)
	}
	s := &Submitter{cfg: cfg, nc: nc, js: js, kv: kv, log: log, waiters: map[string][]chan *busv1.OpRecord{}}
	s.sub, err = nc.Subscribe(bus.OpsUpdates, s.onUpdate)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", bus.OpsUpdates, err)
	}
	// Outcomes of every instance's ops arrive here; never drop them for a slow reader.
	if err := s.sub.SetPendingLimits(1<<20, 256<<20); err != nil {
		return nil, err
	}
	return s, nil
}

// Close stops receiving outcomes.
func (s *Submitter) Close() error { return s.sub.Unsubscribe() }

// Submit runs op and returns its outcome: the final one when known in time, the recorded one
// for a repeat of a finished op. Errors are *apierr.Error: op_id_conflict, unavailable, or
// dispatch_timeout carrying the op's ids as data.
func (s *Submitter) Submit(ctx context.Context, op Op) (*busv1.Outcome, error) {
	key := bus.OpKey(op.ChannelID, op.OpID)
	w := s.register(key)
	defer s.unregister(key, w)

	rec, repeat, err := s.record(ctx, key, op)
	if err != nil {
		return nil, err
	}
	switch {
	case bus.GaveUp(rec):
		// lifecycle gave up on the command (500 internal_error): the repeat tries it again.
	case rec.GetState() == busv1.OpState_OP_STATE_DONE && rec.GetOutcome().GetErrorCode() == "dispatch_partial_failure":
		return s.redrive(ctx, op, rec)
	case rec.GetState() == busv1.OpState_OP_STATE_DONE:
		return rec.GetOutcome(), nil
	}
	if err := s.publish(ctx, op, rec, repeat); err != nil {
		return nil, err
	}
	timer := time.NewTimer(s.cfg.DispatchWait)
	defer timer.Stop()
	for {
		select {
		case done := <-w:
			if bus.GaveUp(rec) && done.GetUpdatedAt() == rec.GetUpdatedAt() && done.GetCommandId() == rec.GetCommandId() {
				continue // the update that recorded the outcome being retried, still on its way
			}
			return done.GetOutcome(), nil
		case <-timer.C:
			e := apierr.Newf("dispatch_timeout", "the op was accepted but its delivery did not finish within %s; repeat it with op_id %q for the outcome", s.cfg.DispatchWait, op.OpID)
			e.Data = &apiv1.EventOpResult{ChannelId: op.ChannelID, OpId: op.OpID, EventId: op.EventID, ThingId: op.Fields.ThingId,
				Delivery: &apiv1.Delivery{}}
			return nil, e
		case <-ctx.Done():
			return nil, apierr.New("unavailable", "request cancelled before the op's outcome was known")
		}
	}
}

// redrive asks dispatch to deliver a 503 op again to its failed targets only and returns the
// new outcome. With no dispatch instance to ask, the recorded outcome stands.
func (s *Submitter) redrive(ctx context.Context, op Op, rec *busv1.OpRecord) (*busv1.Outcome, error) {
	data, err := proto.Marshal(&busv1.RedriveRequest{ChannelId: op.ChannelID, OpId: op.OpID, CommandId: rec.GetCommandId()})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, s.cfg.DispatchWait)
	defer cancel()
	reply, err := s.nc.RequestWithContext(rctx, bus.RedriveSubject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return rec.GetOutcome(), nil
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		e := apierr.Newf("dispatch_timeout", "the retry of the failed targets did not finish within %s; repeat op_id %q for the outcome", s.cfg.DispatchWait, op.OpID)
		e.Data = rec.GetOutcome().GetResult()
		return nil, e
	case err != nil:
		return nil, s.unavailable(err)
	case len(reply.Data) == 0:
		return rec.GetOutcome(), nil // nothing to redrive (another request is at it)
	}
	fresh := &busv1.OpRecord{}
	if err := proto.Unmarshal(reply.Data, fresh); err != nil {
		return nil, fmt.Errorf("decode redrive reply: %w", err)
	}
	return fresh.GetOutcome(), nil
}

// record creates the op record, or returns the existing one for a repeat. repeat is true when
// the record belongs to an earlier request with the same op_id.
func (s *Submitter) record(ctx context.Context, key string, op Op) (rec *busv1.OpRecord, repeat bool, err error) {
	now := time.Now().UnixMilli()
	mine := &busv1.OpRecord{
		Route: op.Route, Fingerprint: op.Fingerprint, CommandId: newID(), ChannelId: op.ChannelID,
		OpId: op.OpID, EventId: op.EventID, State: busv1.OpState_OP_STATE_PENDING, CreatedAt: now, UpdatedAt: now,
	}
	data, err := proto.Marshal(mine)
	if err != nil {
		return nil, false, err
	}
	for range 3 { // a record may expire between Create and Get; then create again
		err = s.retry(ctx, func(ctx context.Context) error {
			_, err := s.kv.Create(ctx, key, data)
			return err
		})
		if err == nil {
			return mine, false, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, false, s.unavailable(err)
		}
		var entry jetstream.KeyValueEntry
		err = s.retry(ctx, func(ctx context.Context) error {
			var err error
			entry, err = s.kv.Get(ctx, key)
			return err
		})
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, false, s.unavailable(err)
		}
		rec = &busv1.OpRecord{}
		if err := proto.Unmarshal(entry.Value(), rec); err != nil {
			return nil, false, fmt.Errorf("decode op record %s: %w", key, err)
		}
		if rec.GetCommandId() == mine.GetCommandId() {
			return rec, false, nil // our own Create landed on a try that timed out
		}
		if rec.GetRoute() != op.Route || rec.GetFingerprint() != op.Fingerprint {
			return nil, false, apierr.Newf("op_id_conflict", "op_id %q was already used for a different request in this channel", op.OpID)
		}
		return rec, true, nil
	}
	return nil, false, s.unavailable(err)
}

// publish sends the command of op under the record's command id. A repeat republishes it: the
// message id collapses it while the first copy is in the stream's duplicate window, and the
// redrive header makes lifecycle check the event's history for it otherwise, so a pending op
// whose first request died before publishing still completes. The retry of an op lifecycle
// gave up on goes out under a message id of its own (bus.RetryDedupeID).
func (s *Submitter) publish(ctx context.Context, op Op, rec *busv1.OpRecord, repeat bool) error {
	cmd := &busv1.EventCommand{
		Envelope: &busv1.Envelope{
			Id: bus.CommandMsgID(op.ChannelID, op.OpID, rec.GetCommandId()), Type: "event." + op.Route,
			ChannelId: op.ChannelID, EventId: rec.GetEventId(), OpId: op.OpID,
			RecordedAt: time.Now().UnixMilli(), SchemaVersion: bus.SchemaVersion,
		},
		Route:       op.Route,
		CommandId:   rec.GetCommandId(),
		Fingerprint: op.Fingerprint,
		Fields:      op.Fields,
		OpCreatedAt: rec.GetCreatedAt(),
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(bus.CommandSubject(op.ChannelID, rec.GetEventId()))
	msg.Data = data
	if repeat {
		msg.Header.Set(bus.HeaderRedrive, "1")
	}
	msgID := bus.DedupeID(cmd.GetCommandId(), cmd.GetEnvelope().GetId())
	if bus.GaveUp(rec) {
		msgID = bus.RetryDedupeID(rec)
	}
	err = s.retry(ctx, func(ctx context.Context) error {
		_, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID), jetstream.WithExpectStream(bus.StreamCommands))
		return err
	})
	if err != nil {
		return s.unavailable(err)
	}
	return nil
}

// retry runs a broker call within the retry budget.
func (s *Submitter) retry(ctx context.Context, f func(context.Context) error) error {
	return bus.Retry(ctx, s.cfg.RetryBudget, f)
}

// unavailable is the answer when the broker could not be reached within the retry budget.
func (s *Submitter) unavailable(err error) *apierr.Error {
	s.log.Warn("broker unavailable", "err", err)
	e := apierr.New("unavailable", "the event store is unavailable; retry with the same op_id")
	e.RetryAfter = 5
	return e
}

// register adds a waiter for key before anything can complete it.
func (s *Submitter) register(key string) chan *busv1.OpRecord {
	w := make(chan *busv1.OpRecord, 1)
	s.mu.Lock()
	s.waiters[key] = append(s.waiters[key], w)
	s.mu.Unlock()
	return w
}

func (s *Submitter) unregister(key string, w chan *busv1.OpRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ws := s.waiters[key]
	for i, x := range ws {
		if x == w {
			ws = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(ws) == 0 {
		delete(s.waiters, key)
	} else {
		s.waiters[key] = ws
	}
}

// onUpdate routes a finished op record to the requests waiting for it.
func (s *Submitter) onUpdate(m *nats.Msg) {
	key := bus.OpKeyFromSubject(m.Subject)
	s.mu.Lock()
	n := len(s.waiters[key])
	s.mu.Unlock()
	if n == 0 || len(m.Data) == 0 {
		return
	}
	rec := &busv1.OpRecord{}
	if err := proto.Unmarshal(m.Data, rec); err != nil {
		s.log.Warn("undecodable op record update", "key", key, "err", err)
		return
	}
	if rec.GetState() != busv1.OpState_OP_STATE_DONE {
		return
	}
	s.mu.Lock()
	for _, w := range s.waiters[key] {
		// Keep the latest record only. This handler is the only sender, so after the drain
		// the send does not block.
		select {
		case <-w:
		default:
		}
		w <- rec
	}
	s.mu.Unlock()
}

// newID returns 32 random lowercase hex characters.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// NewOpID returns an op_id for a request that gave none.
func NewOpID() string { return newID() }

// NewEventID returns the event_id of a create: derived from (channel, op_id) when the client
// gave the op_id, so a replay after the idempotency window maps to the same event (and is
// answered event_exists), otherwise random. 32 lowercase hex characters either way.
func NewEventID(channelID, opID string, clientOpID bool) string {
	if !clientOpID {
		return newID()
	}
	sum := sha256.Sum256([]byte("pushgo/event-id\x00" + channelID + "\x00" + opID))
	return hex.EncodeToString(sum[:16])
}
