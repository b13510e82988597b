// Package ops runs event ops to their outcome for ingest (DESIGN.md §4, §5): it publishes the
// command and waits for the outcome that lifecycle (a rejection, or the recorded outcome of a
// repeat) or dispatch (a delivery) publishes once it is on record. Repeats are told from new
// ops by lifecycle, from the event's log (docs/scale.md): ingest keeps no record per op.
// Outcomes arrive on one core NATS subscription per instance (bus.OutcomeSubjects) and are
// routed in memory to the waiting requests: no consumer, subscription or goroutine is created
// per request. Core NATS does not keep what is published while a connection is down, so after
// a reconnect the instance asks again for the outcome of every op still waiting (reask).
package ops

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/tracing"
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
	// Layout is the store's partitions: each command goes to its channel's commands stream.
	// The zero Layout is one.
	Layout bus.Layout
}

// Submitter runs ops. It is safe for concurrent use; Close it to drop its subscription.
type Submitter struct {
	cfg    Config
	nc     *nats.Conn
	js     jetstream.JetStream
	sub    *nats.Subscription
	status chan nats.Status
	done   chan struct{}
	log    *slog.Logger

	mu      sync.Mutex
	waiters map[string][]*waiter
}

// waiter is one request waiting for its op's outcome.
type waiter struct {
	commandID, route, fingerprint string
	c                             chan outcome
	// op and header are what a reask publishes again.
	op     Op
	header nats.Header
}

// outcome is an op's outcome as published; recorded says it was read back for a repeat.
type outcome struct {
	rec      *busv1.OpRecord
	recorded bool
}

// wants reports whether an outcome answers w. The op's own outcome (its delivery) answers
// every request for the same op; a rejection, conflict or give-up answers the request it was
// decided for, and any other carrying the same request (a repeat is judged the same way).
func (w *waiter) wants(rec *busv1.OpRecord) bool {
	if rec.GetCommandId() == w.commandID {
		return true
	}
	return !bus.GaveUp(rec) && rec.GetRoute() == w.route && rec.GetFingerprint() == w.fingerprint
}

// New subscribes to op outcomes and returns a ready Submitter.
func New(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, cfg Config, log *slog.Logger) (*Submitter, error) {
	s := &Submitter{cfg: cfg, nc: nc, js: js, log: log, waiters: map[string][]*waiter{}, done: make(chan struct{})}
	var err error
	s.sub, err = nc.Subscribe(bus.OutcomeSubjects, s.onOutcome)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", bus.OutcomeSubjects, err)
	}
	// Outcomes of every instance's ops arrive here; never drop them for a slow reader.
	if err := s.sub.SetPendingLimits(1<<20, 256<<20); err != nil {
		return nil, err
	}
	s.status = nc.StatusChanged(nats.CONNECTED)
	go s.reaskOnReconnect()
	return s, nil
}

// Close stops receiving outcomes.
func (s *Submitter) Close() error {
	s.nc.RemoveStatusListener(s.status)
	<-s.done
	return s.sub.Unsubscribe()
}

// reaskOnReconnect runs reask each time the connection is back (CONNECTED is only reported
// for a reconnect: the first connection was made before New).
func (s *Submitter) reaskOnReconnect() {
	defer close(s.done)
	for range s.status {
		s.reask()
	}
}

// reask publishes the command of every waiting op again, as a client's repeat would: an
// outcome published while this instance's connection was down never reached it, and without
// this its requests would wait out DispatchWait and answer 503 although their ops completed
// (a broker node's death did that to every channel whose op was in flight, docs/scale.md).
// Lifecycle answers a repeat of a finished op with its recorded outcome, and a repeat of one
// still running is answered by that op's delivery; a new command id keeps the broker from
// dropping the copy as a duplicate. Every waiter accepts either answer (waiter.wants).
func (s *Submitter) reask() {
	s.mu.Lock()
	var ws []*waiter
	for _, list := range s.waiters {
		ws = append(ws, list...)
	}
	s.mu.Unlock()
	if len(ws) == 0 {
		return
	}
	s.log.Info("connection back: asking again for the outcomes of waiting ops", "ops", len(ws))
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DispatchWait)
	defer cancel()
	var wg sync.WaitGroup
	for _, w := range ws {
		wg.Go(func() {
			if err := s.publish(ctx, w.op, newID(), w.header); err != nil {
				s.log.Warn("asking again for an op's outcome failed", "op_id", w.op.OpID, "err", err)
			}
		})
	}
	wg.Wait()
}

// Submit runs op and returns its outcome: the final one when known in time, the recorded one
// for a repeat of a finished op. Errors are *apierr.Error: unavailable, or dispatch_timeout
// carrying the op's ids as data.
func (s *Submitter) Submit(ctx context.Context, op Op) (*busv1.Outcome, error) {
	key := bus.OpKey(op.ChannelID, op.OpID)
	// The trace context and the request id travel with the command (tracing.Headers).
	w := &waiter{commandID: newID(), route: op.Route, fingerprint: op.Fingerprint, c: make(chan outcome, 1),
		op: op, header: tracing.Headers(ctx)}
	s.register(key, w)
	defer s.unregister(key, w)

	if err := s.publish(ctx, op, w.commandID, w.header); err != nil {
		return nil, err
	}
	timer := time.NewTimer(s.cfg.DispatchWait)
	defer timer.Stop()
	select {
	case out := <-w.c:
		if out.recorded && out.rec.GetOutcome().GetErrorCode() == "dispatch_partial_failure" {
			return s.redrive(ctx, op, out.rec)
		}
		return out.rec.GetOutcome(), nil
	case <-timer.C:
		e := apierr.Newf("dispatch_timeout", "the op was accepted but its delivery did not finish within %s; repeat it with op_id %q for the outcome", s.cfg.DispatchWait, op.OpID)
		e.Data = &apiv1.EventOpResult{ChannelId: op.ChannelID, OpId: op.OpID, EventId: op.EventID, ThingId: op.Fields.ThingId,
			Delivery: &apiv1.Delivery{}}
		return nil, e
	case <-ctx.Done():
		return nil, apierr.New("unavailable", "request cancelled before the op's outcome was known")
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

// publish sends the command of op with header. Each request publishes its own (commandID);
// lifecycle tells a repeat from a new op by the event's log, and its message id collapses the
// copies a publish retried through a leader election leaves.
func (s *Submitter) publish(ctx context.Context, op Op, commandID string, header nats.Header) error {
	now := time.Now().UnixMilli()
	cmd := &busv1.EventCommand{
		Envelope: &busv1.Envelope{
			Id: bus.CommandMsgID(op.ChannelID, op.OpID, commandID), Type: "event." + op.Route,
			ChannelId: op.ChannelID, EventId: op.EventID, OpId: op.OpID,
			RecordedAt: now, SchemaVersion: bus.SchemaVersion,
		},
		Route:       op.Route,
		CommandId:   commandID,
		Fingerprint: op.Fingerprint,
		Fields:      op.Fields,
		OpCreatedAt: now,
	}
	data, err := proto.Marshal(cmd)
	if err != nil {
		return err
	}
	msgID := bus.DedupeID(commandID, cmd.GetEnvelope().GetId())
	// A copy: the publish adds its own headers, and a reask may publish the same op at once.
	msg := &nats.Msg{Subject: s.cfg.Layout.CommandSubject(op.ChannelID, op.EventID), Data: data, Header: maps.Clone(header)}
	err = s.retry(ctx, func(ctx context.Context) error {
		_, err := s.js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID),
			jetstream.WithExpectStream(s.cfg.Layout.CommandsStreamOf(op.ChannelID)))
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
func (s *Submitter) register(key string, w *waiter) {
	s.mu.Lock()
	s.waiters[key] = append(s.waiters[key], w)
	s.mu.Unlock()
}

func (s *Submitter) unregister(key string, w *waiter) {
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

// onOutcome routes a published outcome to the requests waiting for it.
func (s *Submitter) onOutcome(m *nats.Msg) {
	key := bus.OpKeyFromOutcomeSubject(m.Subject)
	s.mu.Lock()
	n := len(s.waiters[key])
	s.mu.Unlock()
	if n == 0 {
		return
	}
	rec := &busv1.OpRecord{}
	if err := proto.Unmarshal(m.Data, rec); err != nil {
		s.log.Warn("undecodable op outcome", "key", key, "err", err)
		return
	}
	out := outcome{rec: rec, recorded: m.Header.Get(bus.HeaderRecorded) != ""}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.waiters[key] {
		if !w.wants(rec) {
			continue
		}
		// Keep the first outcome only: this handler is the only sender, so a full channel
		// already holds an answer.
		select {
		case w.c <- out:
		default:
		}
	}
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
