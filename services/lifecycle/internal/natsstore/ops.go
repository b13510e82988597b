package natsstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/opfilter"
)

// errFound stops a history scan at the entry it looked for.
var errFound = errors.New("found")

// FindOp returns the entry of the event (whose last entry is head) that carries opID, nil
// when the event has none within the idempotency window. It asks the head's op filter
// (opfilter) first, so a new op costs no read: only a repeat, or a false positive of the
// filter's older half, reads the history, from the stream leader (a lagging replica could
// miss the entry and let the op apply twice). A head written before filters existed has
// none: then the whole history is read, once per op until the event's next append.
func (s *Store) FindOp(ctx context.Context, head *logsign.Entry, opID string) (*logsign.Entry, error) {
	if head == nil {
		return nil, nil
	}
	if head.Rec.GetEnvelope().GetOpId() == opID {
		return head, nil
	}
	from := uint64(1)
	if raw := head.Rec.GetOpFilter(); len(raw) > 0 {
		f, err := opfilter.Decode(raw)
		if err != nil {
			return nil, fmt.Errorf("op filter of %s at %d: %w", head.Subject, head.Seq, err)
		}
		res, seq := f.Lookup(opID)
		switch res {
		case opfilter.Absent:
			return nil, nil
		case opfilter.Exact:
			e, err := s.entryAt(ctx, head.Subject, seq)
			if err != nil {
				return nil, err
			}
			if e != nil && e.Rec.GetEnvelope().GetOpId() == opID {
				return e, nil
			}
			// A hash collision in the exact list: the op may still be older.
		case opfilter.Maybe: // among the older ops, or a false positive: read from seq on
		}
		from = seq
	}
	var found *logsign.Entry
	err := s.scan(ctx, head.Subject, from, func(e *logsign.Entry) error {
		if e.Rec.GetEnvelope().GetOpId() == opID {
			found = e
			return errFound
		}
		return nil
	})
	if errors.Is(err, errFound) {
		return found, nil
	}
	return nil, err
}

// NextFilter returns the op filter of the entry to append after head: head's filter with
// head's own op added. For a head without one (written before filters existed) it is built
// from the event's history, once.
func (s *Store) NextFilter(ctx context.Context, head *logsign.Entry, now int64, window time.Duration) ([]byte, error) {
	if head == nil {
		return opfilter.New().Encode(), nil
	}
	if raw := head.Rec.GetOpFilter(); len(raw) > 0 {
		f, err := opfilter.Decode(raw)
		if err != nil {
			return nil, fmt.Errorf("op filter of %s at %d: %w", head.Subject, head.Seq, err)
		}
		f.Add(head.Rec.GetEnvelope().GetOpId(), head.Seq, now, window)
		return f.Encode(), nil
	}
	f := opfilter.New()
	var last uint64 // a scan retried through an outage starts again: add each entry once
	err := s.scan(ctx, head.Subject, 1, func(e *logsign.Entry) error {
		if e.Seq <= last {
			return nil
		}
		last = e.Seq
		f.Add(e.Rec.GetEnvelope().GetOpId(), e.Seq, e.Rec.GetEnvelope().GetRecordedAt(), window)
		return nil
	})
	if err != nil {
		return nil, err
	}
	f.Add(head.Rec.GetEnvelope().GetOpId(), head.Seq, now, window) // a no-op when the scan saw it; else it landed after the read
	return f.Encode(), nil
}

// entryAt reads the entry at seq from the leader; nil when it is not an entry of subject.
func (s *Store) entryAt(ctx context.Context, subject string, seq uint64) (*logsign.Entry, error) {
	var m *bus.Msg
	err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		var err error
		m, err = bus.LeaderMsg(ctx, s.nc, bus.EventsStreamOfSubject(subject), seq)
		return err
	})
	if errors.Is(err, bus.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if m.Subject != subject {
		return nil, nil
	}
	e, err := s.verifier.Open(m.Subject, m.Seq, m.Data)
	if errors.Is(err, logsign.ErrIntegrity) {
		return nil, nil // not lifecycle's entry: it proves nothing was applied
	}
	return e, err
}

// scan calls fn for every entry of subject from sequence from on, read from the leader, and
// returns fn's first error. Entries failing their integrity check are skipped: they are not
// lifecycle's and prove nothing.
func (s *Store) scan(ctx context.Context, subject string, from uint64, fn func(*logsign.Entry) error) error {
	return bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		return bus.LeaderRange(ctx, s.nc, bus.EventsStreamOfSubject(subject), subject, from, 0, func(m *bus.Msg) error {
			e, err := s.verifier.Open(m.Subject, m.Seq, m.Data)
			if errors.Is(err, logsign.ErrIntegrity) {
				return nil
			}
			if err != nil {
				return err
			}
			return fn(e)
		})
	})
}
