package devices

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

// maxActivities bounds the activity tokens a device record keeps: ActivityKit runs a handful
// of activities at once, and an activity whose end was never pushed (a token registered for an
// event closed meanwhile) must not pile up. A new one pushes the oldest out.
const maxActivities = 8

// Activity registers (register) or drops a Live Activity token on the device's record
// (ActivityService, DESIGN.md §10.1): its push-to-start token, or the token of the activity
// showing one event of a channel the device is subscribed to.
func (s *Store) Activity(ctx context.Context, req *apiv1.ActivityRequest, register bool) (*apiv1.ActivityResponse, error) {
	a, verr := validate.ActivityRequest(req, register)
	if verr != nil {
		return nil, verr
	}
	rec, rev, err := s.mustLoad(ctx, a.DeviceKey)
	if err != nil {
		return nil, err
	}
	if verr := validate.ActivityPlatform(rec.GetPlatform()); verr != nil {
		return nil, verr
	}
	resp := &apiv1.ActivityResponse{DeviceKey: a.DeviceKey, Kind: "push_to_start"}
	if !a.Start {
		resp.Kind, resp.ChannelId, resp.EventId = "activity", &a.ChannelID, &a.EventID
		if register {
			if err := s.subscribed(ctx, a.ChannelID, a.DeviceKey); err != nil {
				return nil, err
			}
		}
	}
	for range maxCAS {
		if resp.Changed = applyActivity(rec, a, register, time.Now().UnixMilli()); !resp.Changed {
			return resp, nil
		}
		err := s.update(ctx, rec, rev)
		if err == nil {
			return resp, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		if rec, rev, err = s.mustLoad(ctx, a.DeviceKey); err != nil {
			return nil, err
		}
	}
	return nil, s.unavailable(errors.New("too many concurrent changes of one device"))
}

// subscribed reports device_not_subscribed unless the device is subscribed to the channel: an
// activity token receives the event's content, so only a subscriber may register one.
func (s *Store) subscribed(ctx context.Context, channelID, deviceKey string) error {
	var found bool
	err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		_, err := s.subs.Get(ctx, bus.SubKey(channelID, deviceKey))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		return s.unavailable(err)
	}
	if !found {
		return apierr.New("device_not_subscribed", "the device is not subscribed to channel_id: subscribe it first")
	}
	return nil
}

// applyActivity changes rec as the request says and reports whether anything changed.
func applyActivity(rec *busv1.DeviceRecord, a validate.Activity, register bool, now int64) bool {
	if a.Start {
		if rec.GetActivityStartToken() == a.Token {
			return false
		}
		rec.ActivityStartToken = a.Token
		return true
	}
	i := slices.IndexFunc(rec.GetActivities(), func(t *busv1.ActivityToken) bool {
		return t.GetChannelId() == a.ChannelID && t.GetEventId() == a.EventID
	})
	switch {
	case !register && i < 0:
		return false
	case !register:
		rec.Activities = slices.Delete(rec.Activities, i, i+1)
		return true
	case i >= 0 && rec.Activities[i].GetToken() == a.Token:
		return false
	case i >= 0: // the activity's token rotated
		rec.Activities[i].Token, rec.Activities[i].RegisteredAt = a.Token, now
		return true
	}
	rec.Activities = append(rec.Activities, &busv1.ActivityToken{ChannelId: a.ChannelID, EventId: a.EventID, Token: a.Token, RegisteredAt: now})
	if n := len(rec.Activities); n > maxActivities {
		rec.Activities = slices.Delete(rec.Activities, 0, n-maxActivities)
	}
	return true
}
