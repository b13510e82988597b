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
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Reader reads PUSHGO_EVENTS (each channel's partition of it). Every entry it answers from is opened with the log's verifier
// first (proto/logsign): one that fails is logged, counted by the verifier and answered 500
// integrity_error. It is safe for concurrent use.
type Reader struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	v      *logsign.Verifier
	log    *slog.Logger
	layout bus.Layout
}

// New returns a reader over an open connection; v checks what it reads (nil: nothing). Each
// channel's events are read from its partition's stream (l).
func New(nc *nats.Conn, js jetstream.JetStream, v *logsign.Verifier, l bus.Layout, log *slog.Logger) *Reader {
	return &Reader{nc: nc, js: js, v: v, log: log, layout: l}
}

// Get returns the current state of an event, read from the stream leader so that it reflects
// every op answered before the call: event_not_found when it has no history. The head is
// checked in its place (its authenticator, and that it follows the entry before it with
// nothing between: logsign.Verifier.CheckPlace).
func (r *Reader) Get(ctx context.Context, channelID, eventID string) (*apiv1.Event, error) {
	stream := r.layout.EventsStreamOf(channelID)
	m, err := bus.LastMsg(ctx, r.nc, stream, r.layout.EventSubject(channelID, eventID))
	if errors.Is(err, bus.ErrNotFound) {
		return nil, notFound(eventID)
	}
	if err != nil {
		return nil, unavailable(err)
	}
	e, err := r.open(m)
	if err != nil {
		return nil, err
	}
	if err := r.v.CheckPlace(ctx, r.nc, stream, e, nil); err != nil {
		return nil, r.failed(err)
	}
	return e.Rec.GetState(), nil
}

// open opens one stored entry; integrity_error when it fails.
func (r *Reader) open(m *bus.Msg) (*logsign.Entry, error) {
	e, err := r.v.Open(m.Subject, m.Seq, m.Data)
	if err != nil {
		return nil, r.failed(err)
	}
	return e, nil
}

// failed turns a failed check into integrity_error (logged) and a failed read into
// unavailable.
func (r *Reader) failed(err error) error {
	ie, ok := errors.AsType[*logsign.IntegrityError](err)
	if !ok {
		return unavailable(err)
	}
	r.log.Error("event log entry failed its integrity check", "subject", ie.Subject, "seq", ie.Seq, "reason", ie.Reason)
	return apierr.New(bus.CodeIntegrity, "this event's log failed its integrity check; the operator has been alerted")
}

// History returns every recorded op of an event in log order: event_not_found when none.
func (r *Reader) History(ctx context.Context, channelID, eventID string) (*apiv1.EventHistory, error) {
	h := &apiv1.EventHistory{EventId: eventID}
	var prev *logsign.Entry
	stream := r.layout.EventsStreamOf(channelID)
	err := bus.History(ctx, r.nc, stream, r.layout.EventSubject(channelID, eventID), 1, func(m *bus.Msg) error {
		e, err := r.open(m)
		if err != nil {
			return err
		}
		// Each entry must follow the one before it: a removed, moved or replayed entry breaks
		// the chain. The oldest held may follow one that expired with the retention.
		if prev == nil && e.Rec.GetPrevSeq() > 0 && r.v != nil {
			first, err := bus.FirstSeq(ctx, r.nc, stream)
			if err != nil {
				return err
			}
			if err := r.v.Starts(e, first); err != nil {
				return r.failed(err)
			}
		} else if err := r.v.Follows(prev, e); err != nil {
			return r.failed(err)
		}
		prev = e
		rec := e.Rec
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
		if _, ok := apierr.As(err); ok {
			return nil, err
		}
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
	// Each head's authenticator is checked; its place is not (two reads per event), get and
	// history check that.
	err = bus.LastPerSubject(ctx, r.nc, r.js, r.layout.EventsStreamOf(q.ChannelID), r.layout.ChannelEventSubjects(q.ChannelID), func(m *bus.Msg) error {
		e, err := r.open(m)
		if err != nil {
			return err
		}
		rec := e.Rec
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
