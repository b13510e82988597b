// Package audit reads and checks the event log for auditors (DESIGN.md §9.4): Export writes
// every entry as a JSON line, Verify checks every entry's authenticator and place in its
// event's chain and refolds each event with the lifecycle rules, State prints every event as it
// was at a moment. All of them read PUSHGO_EVENTS (and its partitions' streams, one after
// another) in stream order through an ordered consumer
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
	// Layout is the log's partitions (bus.StoredPartitions); the zero Layout is one.
	Layout bus.Layout
}

// reads lists the streams to read and the subjects to read in each, one partition after
// another.
func (f Filter) reads() (streams, subjects []string) {
	l := f.Layout
	switch {
	case f.Channel != "" && f.Event != "":
		return []string{l.EventsStreamOf(f.Channel)}, []string{l.EventSubject(f.Channel, f.Event)}
	case f.Channel != "":
		return []string{l.EventsStreamOf(f.Channel)}, []string{l.ChannelEventSubjects(f.Channel)}
	}
	for p := range l.Partitions() {
		streams, subjects = append(streams, l.EventsStream(p)), append(subjects, l.EventFilter(p))
	}
	return streams, subjects
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

// each calls fn for every message of the filter's subjects in stream order, one partition's
// stream after another, read with batched direct gets (no consumer: the auditor's credentials
// may not make one), so memory stays bounded at any log size. It stops at the last message
// each stream held when it reached it.
func each(ctx context.Context, nc *nats.Conn, f Filter, fn func(Msg) error) error {
	streams, subjects := f.reads()
	for i, stream := range streams {
		err := bus.History(ctx, nc, stream, subjects[i], 1, func(m *bus.Msg) error {
			return fn(Msg{Subject: m.Subject, Seq: m.Seq, Data: m.Data})
		})
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("read the log (%s): %w", stream, err)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decode decodes an entry without checking it (export, state).
func decode(m Msg) (*busv1.EventRecorded, error) {
	rec := &busv1.EventRecorded{}
	if err := proto.Unmarshal(m.Data, rec); err != nil {
		return nil, errors.New("undecodable")
	}
	return rec, nil
}
