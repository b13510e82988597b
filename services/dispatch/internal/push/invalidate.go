package push

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// invalidateRoute marks the route of device key dead (route_invalid, DESIGN.md §10.1) after
// its provider refused token for good, unless the route changed meanwhile (another token or
// route type: the device registered again). The directory then leaves the device out of later
// ops until its route is set again. It is best effort: when the write fails, the next op's
// send is refused again and tries again.
func (h *Handler) invalidateRoute(ctx context.Context, key, route, token, reason string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), brokerBudget)
	defer cancel()
	for range 5 {
		e, err := h.devices.Get(ctx, key)
		if err != nil {
			h.log.Warn("marking a dead provider token failed", "device", key, "err", err)
			return
		}
		rec := &busv1.DeviceRecord{}
		if err := proto.Unmarshal(e.Value(), rec); err != nil {
			h.log.Warn("marking a dead provider token failed", "device", key, "err", err)
			return
		}
		if rec.GetChannelType() != route || rec.GetProviderToken() != token || rec.GetRouteInvalid() != "" {
			return
		}
		rec.RouteInvalid, rec.RouteInvalidAt = reason, h.now().UnixMilli()
		data, err := proto.Marshal(rec)
		if err != nil {
			return
		}
		err = bus.Retry(ctx, brokerBudget, func(ctx context.Context) error {
			_, err := h.devices.Update(ctx, key, data, e.Revision())
			return err
		})
		if err == nil {
			h.log.Info("provider token refused for good; the device is no target until its route is set again",
				"device", key, "route", route, "reason", reason)
			return
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			h.log.Warn("marking a dead provider token failed", "device", key, "err", err)
			return
		}
	}
}
