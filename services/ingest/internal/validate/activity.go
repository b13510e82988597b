package validate

import (
	"encoding/hex"
	"strings"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Activity is a validated /activity/register or /activity/unregister request: the
// push-to-start token of the device (Start), or the token of the activity showing one event.
type Activity struct {
	DeviceKey string
	Start     bool
	// Token is the push-to-start or activity token; empty on an unregister.
	Token              string
	ChannelID, EventID string
}

// liveActivityPlatforms run Live Activities (ActivityKit: iPhone and iPad).
var liveActivityPlatforms = map[string]bool{"ios": true, "ipados": true}

// ActivityPlatform checks that a device of platform can show Live Activities.
//
// Errors: live_activity_requires_ios.
func ActivityPlatform(platform string) *apierr.Error {
	if !liveActivityPlatforms[platform] {
		return apierr.New("live_activity_requires_ios", "Live Activities are registered by ios and ipados devices")
	}
	return nil
}

// ActivityRequest validates the body of /activity/register (register true) and
// /activity/unregister: device_key; then either push_to_start_token (the start form) or the
// event — channel_id, and event_id or activity_key "event:<event_id>" — with activity_token or
// token. A token is required to register and ignored to unregister.
//
// Errors: device_key_required, invalid_device_key, invalid_activity_request,
// invalid_activity_key, channel_id_required, invalid_channel_id, event_id_required,
// invalid_event_id, activity_token_required, invalid_activity_token.
func ActivityRequest(req *apiv1.ActivityRequest, register bool) (Activity, *apierr.Error) {
	key, err := DeviceKey(req.GetDeviceKey())
	if err != nil {
		return Activity{}, err
	}
	a := Activity{DeviceKey: key}
	eventGiven := strings.TrimSpace(req.GetEventId()) != "" || strings.TrimSpace(req.GetActivityKey()) != "" ||
		strings.TrimSpace(req.GetChannelId()) != ""
	if req.PushToStartToken != nil {
		if eventGiven || req.ActivityToken != nil || req.Token != nil {
			return Activity{}, apierr.New("invalid_activity_request",
				"give either push_to_start_token, or channel_id, event_id and activity_token, not both")
		}
		a.Start = true
		if register {
			if a.Token, err = activityToken(req.GetPushToStartToken(), "push_to_start_token"); err != nil {
				return Activity{}, err
			}
		}
		return a, nil
	}
	if a.ChannelID, err = ChannelID(req.GetChannelId()); err != nil {
		return Activity{}, err
	}
	ev := strings.TrimSpace(req.GetEventId())
	if k := strings.TrimSpace(req.GetActivityKey()); k != "" {
		id, ok := strings.CutPrefix(k, "event:")
		if !ok || ev != "" && ev != id {
			return Activity{}, apierr.New("invalid_activity_key", `activity_key must be "event:<event_id>" (and name the event_id, when both are given)`)
		}
		ev = id
	}
	if err := checkEventID(ev); err != nil {
		return Activity{}, err
	}
	a.EventID = ev
	if !register {
		return a, nil
	}
	tok, field := req.GetActivityToken(), "activity_token"
	if req.ActivityToken == nil {
		tok, field = req.GetToken(), "token"
	}
	if a.Token, err = activityToken(tok, field); err != nil {
		return Activity{}, err
	}
	return a, nil
}

// activityToken checks an ActivityKit token: an APNs token, hex.
func activityToken(s, field string) (string, *apierr.Error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", apierr.Newf("activity_token_required", "%s is required", field)
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) < minAPNsTokenBytes || len(b) > maxAPNsTokenBytes {
		return "", apierr.Newf("invalid_activity_token", "%s is an APNs token: 64 to 256 hex characters", field)
	}
	return strings.ToLower(s), nil
}
