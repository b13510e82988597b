package logsign

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus"
)

// CheckPlace checks that an opened entry stands where its chain says, reading the stream's
// leader: the entry at its prev_seq is on the same subject, verifies, and is the entry it
// follows (Follows), and no entry of the event lies between the two. (For an event's first
// entry: none lies before it.) That finds a removed entry and an old entry replayed after
// newer ones, which Open alone cannot, for two reads. An unsigned entry below the horizon is
// not checked, nor one whose place its own append proved (Entry.Placed). Read failures are
// returned as they are, not as integrity errors. known, when it is the entry at e's prev_seq
// already opened by the caller, saves reading it.
func (v *Verifier) CheckPlace(ctx context.Context, nc *nats.Conn, stream string, e, known *Entry) error {
	if v == nil || !e.Signed || e.Placed {
		return nil
	}
	var prev *Entry
	ps := e.Rec.GetPrevSeq()
	expired := false
	if known != nil && ps > 0 && known.Seq == ps && known.Subject == e.Subject {
		prev = known
	} else if ps > 0 {
		m, err := bus.LeaderMsg(ctx, nc, stream, ps)
		if errors.Is(err, bus.ErrNotFound) {
			// Expired with the retention, or removed: only the first is allowed.
			first, ferr := bus.FirstSeq(ctx, nc, stream)
			if ferr != nil {
				return ferr
			}
			if ps >= first {
				if err := sees(ctx, nc, stream, e); err != nil {
					return err
				}
				return v.broken(e.Subject, e.Seq, fmt.Sprintf("the entry before it (seq %d) is missing", ps))
			}
			expired = true
		} else if err != nil {
			return err
		} else if m.Subject != e.Subject {
			return v.broken(e.Subject, e.Seq, fmt.Sprintf("the entry before it (seq %d) is missing", ps))
		} else if prev, err = v.Open(m.Subject, m.Seq, m.Data); err != nil {
			return err
		}
	}
	if !expired {
		if err := v.Follows(prev, e); err != nil {
			return err
		}
	}
	from := uint64(1)
	if ps > 0 {
		from = ps + 1
	}
	var next *bus.Msg
	var err error
	if v.direct {
		next, err = bus.DirectNext(ctx, nc, stream, e.Subject, from)
	} else {
		next, err = bus.LeaderNext(ctx, nc, stream, e.Subject, from)
	}
	if errors.Is(err, bus.ErrNotFound) || (err == nil && next.Seq > e.Seq) {
		// The read did not see e itself, which was read from this stream: it was answered by
		// a server behind the log (a leader just elected and still applying), not a sign of
		// anything out of place. Transient: the caller reads again.
		return fmt.Errorf("%w: %s seq %d not yet visible where its place was read", ErrStaleRead, e.Subject, e.Seq)
	}
	if err != nil {
		return err
	}
	if next.Seq != e.Seq {
		return v.broken(e.Subject, e.Seq, fmt.Sprintf("another entry of the event lies before it, after seq %d: it is replayed or out of place", from-1))
	}
	return nil
}

// ErrStaleRead reports a read of the log that did not yet see an entry known to be in it:
// answered by a server behind the log, right after a leader change. It is transient
// (bus.Transient), never an integrity failure.
var ErrStaleRead = bus.ErrStaleRead

// sees returns ErrStaleRead unless the leader holds e at its sequence: a missing entry before
// e proves nothing while e itself is not visible either.
func sees(ctx context.Context, nc *nats.Conn, stream string, e *Entry) error {
	m, err := bus.LeaderMsg(ctx, nc, stream, e.Seq)
	if errors.Is(err, bus.ErrNotFound) || (err == nil && m.Subject != e.Subject) {
		return fmt.Errorf("%w: %s seq %d not yet visible where its place was read", ErrStaleRead, e.Subject, e.Seq)
	}
	return err
}

// Recent remembers the last checked entry of recently seen events, so that a reader taking
// the log in order (dispatch) checks an entry's place against the entry before it without
// reading that entry again: one read of the stream per entry instead of two. It is safe for
// concurrent use.
type Recent struct {
	mu  sync.Mutex
	max int
	m   map[string]*Entry
}

// NewRecent returns a memory of at most n events.
func NewRecent(n int) *Recent {
	return &Recent{max: max(n, 1), m: make(map[string]*Entry)}
}

// Check checks e's place (CheckPlace) and remembers e when it passes.
func (r *Recent) Check(ctx context.Context, v *Verifier, nc *nats.Conn, stream string, e *Entry) error {
	if v == nil || !e.Signed {
		return nil
	}
	r.mu.Lock()
	known := r.m[e.Subject]
	r.mu.Unlock()
	if err := v.CheckPlace(ctx, nc, stream, e, known); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.m[e.Subject]; !ok && len(r.m) >= r.max {
		for k := range r.m { // full: forget one at random (map order)
			delete(r.m, k)
			break
		}
	}
	r.m[e.Subject] = e
	return nil
}
