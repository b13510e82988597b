// Package natsstore is the event store on JetStream: one subject per event in PUSHGO_EVENTS
// (or its channel's partition of it, bus.Layout),
// the head message carrying the full state. It loads heads from the stream leader, appends with
// optimistic concurrency (ExpectLastSequencePerSubject) and Nats-Msg-Id, and converts between
// the stored protobuf and the pure fold's types.
package natsstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/tracing"
)

// ErrConflict reports that the event's subject moved past the expected sequence: another op
// was appended first. The caller reloads and decides again.
var ErrConflict = errors.New("event store: wrong last sequence")

// Store reads and appends domain events of PUSHGO_EVENTS. Calls are retried through broker
// outages (a leader election) for up to budget. It is safe for concurrent use.
type Store struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	budget time.Duration
	// signer seals appended entries and verifier opens heads (logsign); nil: unsigned and
	// unchecked, a deployment without log keys.
	signer   *logsign.Signer
	verifier *logsign.Verifier
	// direct reads heads with direct gets: right for an R1 stream, whose only replica is its
	// leader; replicated streams are read from the leader.
	direct bool
	heads  *headCache // nil: every Head reads the stream
	layout bus.Layout
}

// New returns a store over an open connection; direct says the event stream has one replica.
// signer seals what it appends and verifier checks the heads it reads (both nil: neither).
// The store has one partition unless SetLayout says otherwise.
func New(nc *nats.Conn, js jetstream.JetStream, budget time.Duration, direct bool, signer *logsign.Signer, verifier *logsign.Verifier) *Store {
	return &Store{nc: nc, js: js, budget: budget, direct: direct, signer: signer, verifier: verifier}
}

// SetLayout sets the store's partitions: each event lives in its channel's events stream.
// Call it before the store is used.
func (s *Store) SetLayout(l bus.Layout) { s.layout = l }

// CacheHeads makes the store remember the head it appended last for up to n recently changed
// events and answer Head from it. That saves a read per op when this instance is the only one
// appending (pushgo serve); where several are, a remembered head may be stale, and the append
// that follows fails its sequence check, drops it and the op is decided again from a fresh
// read, so correctness never rests on the cache. A stale head costs a failed append, so with
// several instances the cache does not pay.
func (s *Store) CacheHeads(n int) {
	s.heads = &headCache{max: n, m: make(map[string]*logsign.Entry, n)}
}

// Head returns the last entry of an event, nil when the event has no history. A head read
// from the stream is opened and its place checked (logsign): one that fails is an error
// wrapping logsign.ErrIntegrity, never folded on. The returned entry must not be modified.
func (s *Store) Head(ctx context.Context, channelID, eventID string) (*logsign.Entry, error) {
	subject := s.layout.EventSubject(channelID, eventID)
	if h, ok := s.heads.get(subject); ok {
		return h, nil
	}
	stream := s.layout.EventsStreamOf(channelID)
	var m *bus.Msg
	err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		var err error
		if s.direct {
			m, err = bus.DirectLastMsg(ctx, s.nc, stream, subject)
		} else {
			m, err = bus.LastMsg(ctx, s.nc, stream, subject)
		}
		return err
	})
	if errors.Is(err, bus.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e, err := s.verifier.Open(m.Subject, m.Seq, m.Data)
	if err != nil {
		return nil, err
	}
	if err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		return s.verifier.CheckPlace(ctx, s.nc, stream, e, nil)
	}); err != nil {
		return nil, err
	}
	return e, nil
}

// Append stores rec as the next entry of its event after head (nil: the event has no
// history), sealed when the store has a signer, provided head is still the event's last. It
// returns ErrConflict when it is not. The message id makes a retried append of the same command
// a no-op within the duplicate window.
func (s *Store) Append(ctx context.Context, rec *busv1.EventRecorded, head *logsign.Entry) (uint64, error) {
	env := rec.GetEnvelope()
	var data []byte
	var err error
	if s.signer != nil {
		data, err = s.signer.Seal(rec, head)
	} else {
		data, err = proto.Marshal(rec)
	}
	if err != nil {
		return 0, err
	}
	var lastSeq uint64
	if head != nil {
		lastSeq = head.Seq
	}
	subject := s.layout.EventSubject(env.GetChannelId(), env.GetEventId())
	// The trace context and request id of ctx travel with the domain event to dispatch; they
	// are not part of the signed entry.
	msg := &nats.Msg{Subject: subject, Data: data, Header: tracing.Headers(ctx)}
	var ack *jetstream.PubAck
	err = bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		var err error
		ack, err = s.js.PublishMsg(ctx, msg,
			jetstream.WithMsgID(bus.DedupeID(rec.GetCommandId(), env.GetId())),
			jetstream.WithExpectLastSequencePerSubject(lastSeq),
			jetstream.WithExpectStream(s.layout.EventsStreamOf(env.GetChannelId())))
		return err
	})
	if err != nil {
		s.heads.forget(subject)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, ErrConflict
		}
		return 0, fmt.Errorf("append %s: %w", env.GetId(), err)
	}
	if !ack.Duplicate {
		s.signer.Appended(data, subject, ack.Sequence) // its place is proven: the publish expected lastSeq
	}
	s.heads.put(subject, &logsign.Entry{Subject: subject, Seq: ack.Sequence, Data: data, Rec: rec, Signed: s.signer != nil})
	return ack.Sequence, nil
}

// headCache holds the heads a store appended last, per event subject. Its methods do nothing
// on a nil cache.
type headCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*logsign.Entry
}

func (c *headCache) get(subject string) (*logsign.Entry, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[subject]
	return h, ok
}

func (c *headCache) put(subject string, h *logsign.Entry) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[subject]; !ok && len(c.m) >= c.max {
		for k := range c.m { // full: drop one at random (map order)
			delete(c.m, k)
			break
		}
	}
	c.m[subject] = h
}

func (c *headCache) forget(subject string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.m, subject)
	c.mu.Unlock()
}
