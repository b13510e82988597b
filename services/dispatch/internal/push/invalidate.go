package push

import (
	"context"
	"errors"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logctx"
)

// invalidateRoute marks the route of device key dead (route_invalid, DESIGN.md §10.1) after
// its provider refused token for good, unless the route changed meanwhile (another token or
// route type: the device registered again). The directory then leaves the device out of later
// ops until its route is set again.
func (h *Handler) invalidateRoute(ctx context.Context, key, route, token, reason string) {
	if h.changeDevice(ctx, key, "mark a dead provider token", func(rec *busv1.DeviceRecord) bool {
		if rec.GetChannelType() != route || rec.GetProviderToken() != token || rec.GetRouteInvalid() != "" {
			return false
		}
		rec.RouteInvalid, rec.RouteInvalidAt = reason, h.now().UnixMilli()
		return true
	}) {
		h.log.InfoContext(ctx, "provider token refused for good; the device is no target until its route is set again",
			"device", logctx.Device(key), "route", route, "reason", reason)
	}
}

// dropActivity removes from device key's record the token an op's Live Activity push went to:
// after the end was delivered (the activity is over), or when APNs refused the token for good.
func (h *Handler) dropActivity(ctx context.Context, key string, rec *busv1.EventRecorded, why string) {
	env := rec.GetEnvelope()
	if h.changeDevice(ctx, key, "drop a Live Activity token", func(dev *busv1.DeviceRecord) bool {
		if rec.GetRoute() == "create" {
			had := dev.GetActivityStartToken() != ""
			dev.ActivityStartToken = ""
			return had
		}
		n := len(dev.Activities)
		dev.Activities = slices.DeleteFunc(dev.Activities, func(a *busv1.ActivityToken) bool {
			return a.GetChannelId() == env.GetChannelId() && a.GetEventId() == env.GetEventId()
		})
		return len(dev.Activities) != n
	}) {
		h.log.DebugContext(ctx, "Live Activity token dropped", "device", logctx.Device(key), "event", env.GetEventId(), "why", why)
	}
}

// changeDevice applies change to device key's record with a compare-and-set, read again on a
// conflict, and reports whether a change was written (change returns false when there is
// nothing to do). It is best effort: a failure is logged as what; the next op meets the same
// token and tries again.
func (h *Handler) changeDevice(ctx context.Context, key, what string, change func(*busv1.DeviceRecord) bool) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), brokerBudget)
	defer cancel()
	for range 5 {
		e, err := h.devices.Get(ctx, key)
		if err != nil {
			h.log.WarnContext(ctx, what+" failed", "device", logctx.Device(key), "err", err)
			return false
		}
		rec := &busv1.DeviceRecord{}
		if err := proto.Unmarshal(e.Value(), rec); err != nil {
			h.log.WarnContext(ctx, what+" failed", "device", logctx.Device(key), "err", err)
			return false
		}
		if !change(rec) {
			return false
		}
		data, err := proto.Marshal(rec)
		if err != nil {
			return false
		}
		err = bus.Retry(ctx, brokerBudget, func(ctx context.Context) error {
			_, err := h.devices.Update(ctx, key, data, e.Revision())
			return err
		})
		if err == nil {
			return true
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			h.log.WarnContext(ctx, what+" failed", "device", logctx.Device(key), "err", err)
			return false
		}
	}
	return false
}
