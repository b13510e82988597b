package lifecycle

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/lifecycle/internal/event"
	"pushgo.dev/gateway/services/lifecycle/internal/natsstore"
)

// Replay re-decides an event's recorded history with the lifecycle rules, as an auditor
// replaying the event stream would: each entry's op is judged, in log order, against the state
// the entries before it produced, and must give what was recorded — the applied flag, the
// version and the full state after it. It returns the final state, or an error naming the first
// entry that does not follow from the ones before it.
func Replay(history []*busv1.EventRecorded) (*apiv1.Event, error) {
	if len(history) == 0 {
		return nil, errors.New("empty history")
	}
	var state *event.State
	var last *apiv1.Event
	for i, rec := range history {
		env := rec.GetEnvelope()
		cmd := event.Command{Route: event.Route(rec.GetRoute()), ChannelID: env.GetChannelId(), EventID: env.GetEventId(),
			Fields: natsstore.FieldsFromProto(rec.GetFields())}
		d, err := event.Decide(state, cmd, env.GetRecordedAt())
		if err != nil {
			return nil, fmt.Errorf("entry %d (op %s): the rules reject it: %w", i, env.GetOpId(), err)
		}
		if d.Applied != rec.GetApplied() || d.Version != rec.GetVersion() {
			return nil, fmt.Errorf("entry %d (op %s): recorded applied=%v version=%d, replay gives applied=%v version=%d",
				i, env.GetOpId(), rec.GetApplied(), rec.GetVersion(), d.Applied, d.Version)
		}
		got, err := natsstore.StateToProto(d.State)
		if err != nil {
			return nil, err
		}
		if !proto.Equal(got, rec.GetState()) {
			return nil, fmt.Errorf("entry %d (op %s): recorded state %v, replay gives %v", i, env.GetOpId(), rec.GetState(), got)
		}
		state, last = &d.State, got
	}
	return last, nil
}
