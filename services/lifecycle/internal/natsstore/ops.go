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
	raw := head.Rec.GetOpFilter()
	if len(raw) == 0 {
		return s.scanFor(ctx, head.Subject, opID, 1, 0)
	}
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
		if err != nil || (e != nil && e.Rec.GetEnvelope().GetOpId() == opID) {
			return e, err
		}
		// A hash collision on the exact list (one in 2⁵⁹): the op may be anywhere.
		return s.scanFor(ctx, head.Subject, opID, 1, 0)
	case opfilter.Maybe: // among the older ops, or a false positive
	}
	at := func(ctx context.Context, seq uint64) (*logsign.Entry, error) {
		return s.entryAt(ctx, head.Subject, seq)
	}
	found, broken, err := walkBack(ctx, f, opID, seq, at)
	if err != nil || broken == 0 {
		return found, err
	}
	return s.scanFor(ctx, head.Subject, opID, seq, broken)
}

// maxWalk bounds walkBack's reads: a window of 32 × 100,000 ops of one event is far beyond
// any real one, and a longer chain means a loop in a log nobody should have written.
const maxWalk = 100_000

// walkBack looks for opID among the ops at sequence from or later that are older than f's
// exact list, following the chain of exact lists (opfilter.Filter.Oldest): each entry read
// covers the 32 ops before it, and nothing but the event's own entries is read. This is what
// bounds a Bloom false positive: a scan by subject would walk every stream block between the
// event's entries, which on a busy stream is most of the stream.
//
// When the chain breaks (an entry without a filter, written before filters existed, or one
// that fails its integrity check), it returns broken, the sequence it could not go past: the
// ops from from up to broken are left to a scan.
func walkBack(ctx context.Context, f *opfilter.Filter, opID string, from uint64,
	at func(context.Context, uint64) (*logsign.Entry, error)) (found *logsign.Entry, broken uint64, err error) {
	for range maxWalk {
		seq, ok := f.Oldest()
		if !ok || seq < from {
			return nil, 0, nil
		}
		e, err := at(ctx, seq)
		if err != nil {
			return nil, 0, err
		}
		if e == nil || len(e.Rec.GetOpFilter()) == 0 {
			return nil, seq, nil
		}
		if e.Rec.GetEnvelope().GetOpId() == opID {
			return e, 0, nil
		}
		if f, err = opfilter.Decode(e.Rec.GetOpFilter()); err != nil {
			return nil, seq, nil
		}
		if res, seq := f.Lookup(opID); res == opfilter.Exact && seq >= from {
			e, err := at(ctx, seq)
			if err != nil {
				return nil, 0, err
			}
			if e != nil && e.Rec.GetEnvelope().GetOpId() == opID {
				return e, 0, nil
			}
		}
	}
	return nil, 0, fmt.Errorf("op filter chain of %s: longer than %d links", opID, maxWalk)
}

// scanFor reads the event's entries from sequence from on (up to and including upTo, when
// not 0) and returns the first carrying opID.
func (s *Store) scanFor(ctx context.Context, subject, opID string, from, upTo uint64) (*logsign.Entry, error) {
	var found *logsign.Entry
	err := s.scan(ctx, subject, from, func(e *logsign.Entry) error {
		if upTo != 0 && e.Seq > upTo {
			return errFound
		}
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
