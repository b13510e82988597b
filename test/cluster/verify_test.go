package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/lifecycle"
)

// report is what the checks found.
type report struct {
	ops, acknowledged, lost, duplicatedLog, duplicatedInbox int
	problems                                                []string
}

func (r *report) problem(format string, args ...any) {
	if len(r.problems) < 20 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

// settle waits until every command of every partition is folded and every domain event
// dispatched.
func settle(ctx context.Context, js jetstream.JetStream, within time.Duration) error {
	layout := bus.NewLayout(partitions)
	deadline := time.Now().Add(within)
	var last error
	for time.Now().Before(deadline) {
		last = func() error {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			for p := range layout.Partitions() {
				folder, err := js.Consumer(ctx, layout.CommandsStream(p), bus.ConsumerLifecycle)
				if err != nil {
					return err
				}
				if info := folder.CachedInfo(); info.NumPending > 0 || info.NumAckPending > 0 {
					return fmt.Errorf("lifecycle, partition %d: %d commands pending, %d unacked", p, info.NumPending, info.NumAckPending)
				}
				cons, err := js.Consumer(ctx, layout.EventsStream(p), bus.ConsumerDispatch)
				if err != nil {
					return err
				}
				if info := cons.CachedInfo(); info.NumPending > 0 || info.NumAckPending > 0 {
					return fmt.Errorf("dispatch, partition %d: %d pending, %d unacked", p, info.NumPending, info.NumAckPending)
				}
			}
			return nil
		}()
		if last == nil {
			return nil
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return last
}

// readAll runs a read of a whole subject from the leader again from its start until it
// completes, for up to a minute: right after the faults a stream may have no leader yet
// (503 "JetStream system temporarily unavailable", at once), and a request that reached a
// leader stepping down (lifecycle moves leaders after the faults) is never answered; each get
// gives up after 5 s (bus), and the read starts over a quarter second later.
func readAll(ctx context.Context, read func(context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		err := read(ctx)
		if err == nil || !bus.Transient(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return err
		}
	}
}

// verify checks the event store and the inboxes against what the load was told.
func verify(ctx context.Context, nc *nats.Conn, ops []*op, devices map[string][]string) (*report, error) {
	r := &report{ops: len(ops)}
	byEvent := map[string][]*op{}
	for _, o := range ops {
		if o.acked {
			r.acknowledged++
		}
		if o.event != "" {
			byEvent[o.channel+"/"+o.event] = append(byEvent[o.channel+"/"+o.event], o)
		}
	}
	// The event store: each acknowledged op exactly once; the history replays to the state.
	for _, evOps := range byEvent {
		ch, ev := evOps[0].channel, evOps[0].event
		var history []*busv1.EventRecorded
		err := readAll(ctx, func(ctx context.Context) error {
			history = history[:0]
			return bus.LeaderRange(ctx, nc, bus.NewLayout(partitions).EventsStreamOf(ch), bus.NewLayout(partitions).EventSubject(ch, ev), 1, 0, func(m *bus.Msg) error {
				rec := &busv1.EventRecorded{}
				if err := proto.Unmarshal(m.Data, rec); err != nil {
					return err
				}
				history = append(history, rec)
				return nil
			})
		})
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", ev, err)
		}
		count := map[string]int{}
		for _, rec := range history {
			count[rec.GetEnvelope().GetOpId()]++
		}
		for op, n := range count {
			if n > 1 {
				r.duplicatedLog += n - 1
				r.problem("event %s: op %s stored %d times", ev, op, n)
			}
		}
		for _, o := range evOps {
			if o.acked && count[o.opID] == 0 {
				r.lost++
				r.problem("event %s: acknowledged op %s is not in the event store", ev, o.opID)
			}
		}
		if len(history) > 0 {
			if _, err := lifecycle.Replay(history); err != nil {
				r.problem("event %s: stored state is not the fold of its history: %v", ev, err)
			}
		}
	}
	// The inboxes: every acknowledged, applied op of the channel exactly once per device.
	for ch, keys := range devices {
		for _, key := range keys {
			var seen map[string]int
			err := readAll(ctx, func(ctx context.Context) error {
				seen = map[string]int{}
				return bus.LeaderRange(ctx, nc, bus.StreamInbox, bus.InboxSubject(key), 1, 0, func(m *bus.Msg) error {
					item := &busv1.InboxMessage{}
					if err := proto.Unmarshal(m.Data, item); err != nil {
						return err
					}
					seen[item.GetEventId()+"/"+item.GetData()["event_version"]]++
					return nil
				})
			})
			if err != nil {
				return nil, fmt.Errorf("inbox of %s: %w", key, err)
			}
			for k, n := range seen {
				if n > 1 {
					r.duplicatedInbox += n - 1
					r.problem("device %s: %s pushed %d times", key, k, n)
				}
			}
			missing, expected := 0, 0
			for _, o := range ops {
				if o.channel != ch || !o.acked || !o.applied {
					continue
				}
				expected++
				if seen[fmt.Sprintf("%s/%d", o.event, o.version)] == 0 {
					missing++
					r.problem("device %s: acknowledged op %s (version %d, %d targets) not in its inbox", key, o.opID, o.version, o.targets)
				}
			}
			if missing > 0 {
				r.lost += missing
				r.problems = append(r.problems, fmt.Sprintf("device %s of channel %s: %d of %d acknowledged ops missing, inbox holds %d",
					key, ch, missing, expected, len(seen)))
			}
		}
	}
	slices.Sort(r.problems)
	return r, nil
}

func sortTimes(ts []time.Time) {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
}
