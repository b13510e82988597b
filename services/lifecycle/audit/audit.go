// Package audit reads and checks the event log for auditors (DESIGN.md §9.4): Export writes
// every entry as a JSON line, Verify checks every entry's authenticator and place in its
// event's chain and refolds each event with the lifecycle rules, State prints every event as it
// was at a moment. All of them read PUSHGO_EVENTS in stream order through an ordered consumer
// (nothing durable is made, nothing is written), so they run with the auditor's read-only
// credentials against a live cluster, or against a copy of a stopped data dir.
package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// Filter selects entries. Channel and Event narrow the subjects read; Thing keeps the events
// whose state names that thing_id; Since and Until (Unix ms, 0: open) keep entries recorded in
// [Since, Until].
type Filter struct {
	Channel, Event, Thing string
	Since, Until          int64
}

func (f Filter) subject() string {
	switch {
	case f.Channel != "" && f.Event != "":
		return bus.EventSubject(f.Channel, f.Event)
	case f.Channel != "":
		return bus.ChannelEventSubjects(f.Channel)
	default:
		return bus.EventSubjects
	}
}

// keeps reports whether rec passes the time and thing filters.
func (f Filter) keeps(rec *busv1.EventRecorded) bool {
	at := rec.GetEnvelope().GetRecordedAt()
	if (f.Since > 0 && at < f.Since) || (f.Until > 0 && at > f.Until) {
		return false
	}
	return f.Thing == "" || rec.GetState().GetThingId() == f.Thing
}

// Msg is one stored entry as read.
type Msg struct {
	Subject string
	Seq     uint64
	Data    []byte
}

// each calls fn for every message of the filter's subjects in stream order, read with batched
// direct gets (no consumer: the auditor's credentials may not make one), so memory stays
// bounded at any log size. It stops at the last message the stream held when it reached it.
func each(ctx context.Context, nc *nats.Conn, f Filter, fn func(Msg) error) error {
	err := bus.History(ctx, nc, bus.StreamEvents, f.subject(), 1, func(m *bus.Msg) error {
		return fn(Msg{Subject: m.Subject, Seq: m.Seq, Data: m.Data})
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("read the log: %w", err)
	}
	return err
}

// decode decodes an entry without checking it (export, state).
func decode(m Msg) (*busv1.EventRecorded, error) {
	rec := &busv1.EventRecorded{}
	if err := proto.Unmarshal(m.Data, rec); err != nil {
		return nil, errors.New("undecodable")
	}
	return rec, nil
}
