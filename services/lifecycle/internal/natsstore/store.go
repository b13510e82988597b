// Package natsstore is the event store on JetStream: one subject per event in PUSHGO_EVENTS,
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
	// direct reads heads with direct gets: right for an R1 stream, whose only replica is its
	// leader; replicated streams are read from the leader.
	direct bool
	heads  *headCache // nil: every Head reads the stream
}

// New returns a store over an open connection; direct says the event stream has one replica.
func New(nc *nats.Conn, js jetstream.JetStream, budget time.Duration, direct bool) *Store {
	return &Store{nc: nc, js: js, budget: budget, direct: direct}
}

// CacheHeads makes the store remember the head it appended last for up to n recently changed
// events and answer Head from it. That saves a read per op when this instance is the only one
// appending (pushgo serve); where several are, a remembered head may be stale, and the append
// that follows fails its sequence check, drops it and the op is decided again from a fresh
// read, so correctness never rests on the cache. A stale head costs a failed append, so with
// several instances the cache does not pay.
func (s *Store) CacheHeads(n int) {
	s.heads = &headCache{max: n, m: make(map[string]cachedHead, n)}
}

// Head returns the last domain event of an event and its stream sequence; (nil, 0, nil) when
// the event has no history. The returned message must not be modified.
func (s *Store) Head(ctx context.Context, channelID, eventID string) (*busv1.EventRecorded, uint64, error) {
	subject := bus.EventSubject(channelID, eventID)
	if h, ok := s.heads.get(subject); ok {
		return h.rec, h.seq, nil
	}
	var m *bus.Msg
	err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		var err error
		if s.direct {
			m, err = bus.DirectLastMsg(ctx, s.nc, bus.StreamEvents, subject)
		} else {
			m, err = bus.LastMsg(ctx, s.nc, bus.StreamEvents, subject)
		}
		return err
	})
	if errors.Is(err, bus.ErrNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	rec := &busv1.EventRecorded{}
	if err := proto.Unmarshal(m.Data, rec); err != nil {
		return nil, 0, fmt.Errorf("decode head of %s seq %d: %w", m.Subject, m.Seq, err)
	}
	return rec, m.Seq, nil
}

// Append stores rec as the next entry of its event, provided the event's last sequence is
// still lastSeq (0: the event has no history). It returns ErrConflict when it is not. The
// message id makes a retried append of the same command a no-op within the duplicate window.
func (s *Store) Append(ctx context.Context, rec *busv1.EventRecorded, lastSeq uint64) (uint64, error) {
	env := rec.GetEnvelope()
	data, err := proto.Marshal(rec)
	if err != nil {
		return 0, err
	}
	subject := bus.EventSubject(env.GetChannelId(), env.GetEventId())
	var ack *jetstream.PubAck
	err = bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		var err error
		ack, err = s.js.Publish(ctx, subject, data,
			jetstream.WithMsgID(bus.DedupeID(rec.GetCommandId(), env.GetId())),
			jetstream.WithExpectLastSequencePerSubject(lastSeq),
			jetstream.WithExpectStream(bus.StreamEvents))
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
	s.heads.put(subject, cachedHead{rec: rec, seq: ack.Sequence})
	return ack.Sequence, nil
}

// headCache holds the heads a store appended last, per event subject. Its methods do nothing
// on a nil cache.
type headCache struct {
	mu  sync.Mutex
	max int
	m   map[string]cachedHead
}

type cachedHead struct {
	rec *busv1.EventRecorded
	seq uint64
}

func (c *headCache) get(subject string) (cachedHead, bool) {
	if c == nil {
		return cachedHead{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[subject]
	return h, ok
}

func (c *headCache) put(subject string, h cachedHead) {
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

// Contains reports whether the event's history holds an entry of the given command. It reads
// the whole history from the stream leader (a replica a moment behind could miss the entry and
// let the command be applied twice), one message per round trip, so it is only used when a
// command may have been applied before (a redelivery or a republished command).
func (s *Store) Contains(ctx context.Context, channelID, eventID, commandID string) (bool, error) {
	errFound := errors.New("found")
	err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		return s.contains(ctx, channelID, eventID, commandID, errFound)
	})
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

func (s *Store) contains(ctx context.Context, channelID, eventID, commandID string, errFound error) error {
	return bus.LeaderRange(ctx, s.nc, bus.StreamEvents, bus.EventSubject(channelID, eventID), 1, 0, func(m *bus.Msg) error {
		rec := &busv1.EventRecorded{}
		if err := proto.Unmarshal(m.Data, rec); err != nil {
			return fmt.Errorf("decode %s seq %d: %w", m.Subject, m.Seq, err)
		}
		if rec.GetCommandId() == commandID {
			return errFound
		}
		return nil
	})
}
