// Package hooklog reads the webhook delivery attempts that dispatch keeps per device in
// PUSHGO_ATTEMPTS (DESIGN.md §10.3): those made within an op's budget and those of the durable
// retry schedule, the newest bus.AttemptsPerDevice of each device for bus.AttemptsMaxAge. It
// answers POST /channel/device/attempts.
package hooklog

import (
	"context"
	"slices"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// Log reads attempts; it is safe for concurrent use.
type Log struct {
	nc *nats.Conn
}

// New returns a reader over nc.
func New(nc *nats.Conn) *Log { return &Log{nc: nc} }

// Recent returns up to limit attempts of deviceKey's deliveries, newest first. An attempt
// that does not decode is left out.
func (l *Log) Recent(ctx context.Context, deviceKey string, limit int) ([]*apiv1.DeliveryAttempt, error) {
	out := []*apiv1.DeliveryAttempt{}
	err := bus.History(ctx, l.nc, bus.StreamAttempts, bus.AttemptSubject(deviceKey), 1, func(m *bus.Msg) error {
		a := &busv1.DeliveryAttempt{}
		if proto.Unmarshal(m.Data, a) != nil {
			return nil
		}
		out = append(out, &apiv1.DeliveryAttempt{
			DeliveryId: a.GetDeliveryId(), ChannelId: a.GetChannelId(), EventId: a.GetEventId(), At: a.GetAt(),
			Status: a.GetStatus(), LatencyMs: a.GetLatencyMs(), Error: a.GetError(), Delivered: a.GetDelivered(),
			NextAttemptAt: a.GetNextAttemptAt(),
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(out)
	return out[:min(limit, len(out))], nil
}
