// Package reader serves the read routes from the event store itself (DESIGN.md §2, §6.4): the
// state of an event is the last message on its subject, its history is every message on it,
// and a channel's list is the last message of every event subject of the channel. Nothing is
// projected, so nothing needs rebuilding.
package reader

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Reader reads PUSHGO_EVENTS. It is safe for concurrent use.
type Reader struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// New returns a reader over an open connection.
func New(nc *nats.Conn, js jetstream.JetStream) *Reader { return &Reader{nc: nc, js: js} }

// Get returns the current state of an event, read from the stream leader so that it reflects
// every op answered before the call: event_not_found when it has no history.
func (r *Reader) Get(ctx context.Context, channelID, eventID string) (*apiv1.Event, error) {
	m, err := bus.LastMsg(ctx, r.nc, bus.StreamEvents, bus.EventSubject(channelID, eventID))
	if errors.Is(err, bus.ErrNotFound) {
		return nil, notFound(eventID)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	rec, err := decode(m)
	if err != nil {
		return nil, err
	}
	return rec.GetState(), nil
}

// History returns every recorded op of an event in log order: event_not_found when none.
func (r *Reader) History(ctx context.Context, channelID, eventID string) (*apiv1.EventHistory, error) {
	h := &apiv1.EventHistory{EventId: eventID}
	err := bus.History(ctx, r.nc, bus.StreamEvents, bus.EventSubject(channelID, eventID), 1, func(m *bus.Msg) error {
		rec, err := decode(m)
		if err != nil {
			return err
		}
		h.Entries = append(h.Entries, &apiv1.HistoryEntry{
			Version:    rec.GetVersion(),
			Route:      rec.GetRoute(),
			OpId:       rec.GetEnvelope().GetOpId(),
			EventTime:  rec.GetFields().GetEventTime(),
			RecordedAt: rec.GetEnvelope().GetRecordedAt(),
			Applied:    rec.GetApplied(),
			Fields:     rec.GetFields(),
		})
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	if len(h.Entries) == 0 {
		return nil, notFound(eventID)
	}
	return h, nil
}

// Query selects a page of a channel's events.
type Query struct {
	ChannelID string
	State     string // "", "ONGOING" or "CLOSED"
	Limit     int
	Cursor    string // next_cursor of the previous page, or ""
}

// List returns a page of a channel's events, newest created first (ties by event_id). It reads
// the head of every event of the channel, so its cost grows with the channel's events in the
// retention window; pages are stable under concurrent creates because the cursor is a position
// in the (created_at, event_id) order rather than an offset.
func (r *Reader) List(ctx context.Context, q Query) (*apiv1.ListEventsResponse, error) {
	after, err := parseCursor(q.Cursor)
	if err != nil {
		return nil, err
	}
	var events []*apiv1.Event
	err = bus.LastPerSubject(ctx, r.nc, r.js, bus.StreamEvents, bus.ChannelEventSubjects(q.ChannelID), func(m *bus.Msg) error {
		rec, err := decode(m)
		if err != nil {
			return err
		}
		st := rec.GetState()
		if q.State != "" && st.GetEventState() != q.State {
			return nil
		}
		if after != nil && !after.before(st) {
			return nil
		}
		events = append(events, st)
		return nil
	})
	if err != nil {
		if _, ok := apierr.As(err); ok {
			return nil, err
		}
		return nil, unavailable(err)
	}
	slices.SortFunc(events, func(a, b *apiv1.Event) int {
		return cmp.Or(cmp.Compare(b.GetCreatedAt(), a.GetCreatedAt()), strings.Compare(a.GetEventId(), b.GetEventId()))
	})
	resp := &apiv1.ListEventsResponse{Events: events}
	if len(events) > q.Limit {
		resp.Events = events[:q.Limit]
		last := resp.Events[q.Limit-1]
		next := formatCursor(last)
		resp.NextCursor = &next
	}
	return resp, nil
}

// cursor is a position in the list order: events sorting after it come next.
type cursor struct {
	createdAt int64
	eventID   string
}

// before reports whether the cursor's position sorts before e, i.e. e belongs to a later page.
func (c *cursor) before(e *apiv1.Event) bool {
	if e.GetCreatedAt() != c.createdAt {
		return e.GetCreatedAt() < c.createdAt
	}
	return e.GetEventId() > c.eventID
}

func formatCursor(e *apiv1.Event) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(e.GetCreatedAt(), 10) + ":" + e.GetEventId()))
}

func parseCursor(s string) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	bad := apierr.New("invalid_cursor", "cursor is not a next_cursor returned by /event/list")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, bad
	}
	ts, id, ok := strings.Cut(string(raw), ":")
	n, err := strconv.ParseInt(ts, 10, 64)
	if !ok || err != nil || id == "" {
		return nil, bad
	}
	return &cursor{createdAt: n, eventID: id}, nil
}

func decode(m *bus.Msg) (*busv1.EventRecorded, error) {
	rec := &busv1.EventRecorded{}
	if err := proto.Unmarshal(m.Data, rec); err != nil {
		return nil, fmt.Errorf("decode %s seq %d: %w", m.Subject, m.Seq, err)
	}
	return rec, nil
}

func notFound(eventID string) *apierr.Error {
	return apierr.Newf("event_not_found", "event %s does not exist in this channel", eventID)
}

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	e := apierr.New("unavailable", "the event store is unavailable; retry later")
	e.RetryAfter = 5
	return errors.Join(e, err)
}
