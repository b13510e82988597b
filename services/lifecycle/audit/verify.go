package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/services/lifecycle/internal/event"
	"pushgo.dev/gateway/services/lifecycle/internal/natsstore"
)

// Report is what Verify found.
type Report struct {
	Events, Entries int
	// OK entries passed every check; Unsigned ones were written before the log was signed
	// (below its horizon: decoded and refolded, no authenticator or chain to check).
	OK, Unsigned int
	// Broken entries failed their authenticator or their place in the chain; Mismatched ones
	// are authentic but refolding their event with the lifecycle rules does not give what they
	// record.
	Broken, Mismatched int
	// Problems names each broken or mismatched entry.
	Problems []string
}

// Summary is the report's last line.
func (r *Report) Summary() string {
	return fmt.Sprintf("audit: events=%d entries=%d ok=%d unsigned=%d broken=%d mismatched=%d",
		r.Events, r.Entries, r.OK, r.Unsigned, r.Broken, r.Mismatched)
}

// track is what Verify keeps of one event: its last good entry and the state refolded so far.
// Memory grows with the events read, not with their entries.
type track struct {
	last  *logsign.Entry
	state *event.State
	// partial: the event's first entries were outside the time filter, so its chain and fold
	// are checked from the first entry read on.
	partial bool
}

// Verify reads the entries f selects and checks each: its authenticator with v's keys (v must
// have the log's horizon loaded), its place after the event's previous entry (prev_seq,
// prev_hash, version), and that deciding its op with the lifecycle rules against the state
// refolded so far gives the applied flag, version and state it records. A broken entry is
// left out of its event's chain and fold. progress, when not nil, gets a line every few
// seconds on long runs.
func Verify(ctx context.Context, nc *nats.Conn, v *logsign.Verifier, f Filter, progress io.Writer) (*Report, error) {
	if v == nil {
		return nil, errors.New("audit verify needs the log's public keys")
	}
	r := &Report{}
	events := map[string]*track{}
	lastProgress := time.Now()
	problem := func(counter *int, format string, args ...any) {
		*counter++
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
	err := each(ctx, nc, f, func(m Msg) error {
		if progress != nil && time.Since(lastProgress) > 2*time.Second {
			fmt.Fprintf(progress, "audit: %d entries read, at seq %d\n", r.Entries, m.Seq)
			lastProgress = time.Now()
		}
		e, err := v.Open(m.Subject, m.Seq, m.Data)
		if err != nil {
			r.Entries++
			problem(&r.Broken, "broken: %v", err)
			return nil
		}
		if !f.keeps(e.Rec) {
			return nil
		}
		r.Entries++
		t := events[m.Subject]
		if t == nil {
			t = &track{partial: f.Since > 0 && (e.Rec.GetVersion() != 1 || e.Rec.GetPrevSeq() != 0)}
			events[m.Subject] = t
			r.Events++
		}
		if e.Signed && (!t.partial || t.last != nil) {
			if err := follows(ctx, nc, v, t.last, e); errors.Is(err, logsign.ErrIntegrity) {
				problem(&r.Broken, "broken: %v", err)
				return nil
			} else if err != nil {
				return err
			}
		}
		if msg := refold(t, e); msg != "" {
			problem(&r.Mismatched, "mismatched: log entry %s seq %d: %s", m.Subject, m.Seq, msg)
			return nil
		}
		// Of the entry, the next one's checks need its place, hash and version only.
		t.last = &logsign.Entry{Subject: e.Subject, Seq: e.Seq, Hash: logsign.Hash(e.Data), Signed: e.Signed,
			Rec: &busv1.EventRecorded{Version: e.Rec.GetVersion(), Applied: e.Rec.GetApplied()}}
		if e.Signed {
			r.OK++
		} else {
			r.Unsigned++
		}
		return nil
	})
	return r, err
}

// follows checks e's place after prev, its event's last good entry (nil: e is the oldest
// read, which may follow an entry that expired with the retention).
func follows(ctx context.Context, nc *nats.Conn, v *logsign.Verifier, prev, e *logsign.Entry) error {
	if prev != nil || e.Rec.GetPrevSeq() == 0 {
		return v.Follows(prev, e)
	}
	first, err := bus.FirstSeq(ctx, nc, bus.EventsStreamOfSubject(e.Subject))
	if err != nil {
		return err
	}
	return v.Starts(e, first)
}

// refold decides e's op against t's state and compares the outcome with what e records; it
// returns what differs ("" when nothing), and moves t's state on.
func refold(t *track, e *logsign.Entry) string {
	rec := e.Rec
	if t.last == nil && (t.partial || rec.GetPrevSeq() > 0) { // the oldest entry read of an event cut by the time filter or the retention
		t.state = natsstore.StateFromProto(rec.GetState())
		return ""
	}
	env := rec.GetEnvelope()
	cmd := event.Command{Route: event.Route(rec.GetRoute()), ChannelID: env.GetChannelId(), EventID: env.GetEventId(),
		Fields: natsstore.FieldsFromProto(rec.GetFields())}
	d, err := event.Decide(t.state, cmd, env.GetRecordedAt())
	if err != nil {
		return fmt.Sprintf("the rules reject its op %s: %v", env.GetOpId(), err)
	}
	if d.Applied != rec.GetApplied() || d.Version != rec.GetVersion() {
		return fmt.Sprintf("records applied=%v version=%d, refolding gives applied=%v version=%d",
			rec.GetApplied(), rec.GetVersion(), d.Applied, d.Version)
	}
	got, err := natsstore.StateToProto(d.State)
	if err != nil {
		return err.Error()
	}
	if !proto.Equal(got, rec.GetState()) {
		return fmt.Sprintf("records state %v, refolding gives %v", compact(rec.GetState()), compact(got))
	}
	t.state = &d.State
	return ""
}

func compact(e *apiv1.Event) string {
	b, _ := jsonOpts.Marshal(e)
	return string(b)
}
