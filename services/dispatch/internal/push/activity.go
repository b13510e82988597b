package push

import (
	"context"
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"

	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/dispatch/internal/apns"
)

// target is one delivery of an op: a device by one route, its own (channel_type) or
// RouteLiveActivity for the Live Activity that shows the op's event on it.
type target struct {
	dev   *busv1.DeviceRecord
	route string
	// next is when a redriven webhook target's durable retry is due (Unix ms), 0 when none is
	// scheduled: a redrive that fails again leaves that schedule as it is.
	next int64
}

// deliveryID is the target's delivery id: the device's for its own route (DeliveryID), and
// one of its own for the Live Activity, so that both have a receipt.
func (t target) deliveryID(eventMsgID string) string {
	if t.route == RouteLiveActivity {
		return DeliveryID(eventMsgID, t.dev.GetDeviceKey()+"/"+RouteLiveActivity)
	}
	return DeliveryID(eventMsgID, t.dev.GetDeviceKey())
}

// targetsOf turns the channel's devices into the op's targets: each device by its route, and
// a Live Activity target for a device with an activity to start (a create, and the device's
// push-to-start token), update or end (an activity token for the event).
func targetsOf(devs []*busv1.DeviceRecord, rec *busv1.EventRecorded) []target {
	out := make([]target, 0, len(devs))
	for _, d := range devs {
		out = append(out, target{dev: d, route: d.GetChannelType()})
	}
	for _, d := range devs {
		if activityOf(d, rec) != "" {
			out = append(out, target{dev: d, route: RouteLiveActivity})
		}
	}
	return out
}

// activityOf returns the token the op's Live Activity push goes to on dev: the push-to-start
// token for a create, the event's activity token otherwise; "" when there is none.
func activityOf(dev *busv1.DeviceRecord, rec *busv1.EventRecorded) string {
	if rec.GetRoute() == "create" {
		return dev.GetActivityStartToken()
	}
	env := rec.GetEnvelope()
	for _, a := range dev.GetActivities() {
		if a.GetChannelId() == env.GetChannelId() && a.GetEventId() == env.GetEventId() {
			return a.GetToken()
		}
	}
	return ""
}

// endShownFor is how long an ended activity stays on the lock screen (dismissal-date): long
// enough to read the outcome, well within the 4 hours iOS allows.
const endShownFor = time.Hour

// sendActivity sends the Live Activity push of an op to dev (DESIGN.md §10.1, APNs push type
// liveactivity): create → start (with the alert iOS requires to start one), update → update,
// close → end with a dismissal date. timestamp is the op's event time, so iOS, which ignores a
// push older than the last, agrees with the log (late ops are never pushed). why is
// "activity_gone" when the device no longer has the token (unregistered since).
func (s *apnsSender) sendActivity(ctx context.Context, dev *busv1.DeviceRecord, rec *busv1.EventRecorded, attributesType string) (attempts int, why string, invalid bool) {
	token := activityOf(dev, rec)
	if token == "" {
		return 0, "activity_gone", false
	}
	payload, err := activityPayload(rec, attributesType)
	if err != nil {
		return 0, "apns_payload_too_large", false
	}
	n := apns.Notification{Token: token, PushType: apns.PushTypeLiveActivity, Priority: 5, Payload: payload}
	if rec.GetRoute() != "update" || urgent(rec) {
		n.Priority = 10
	}
	return sendRetrying(ctx, "apns_", func(ctx context.Context) apns.Result { return s.client.Send(ctx, n) })
}

// maxActivityMessage bounds the message in a content state: the whole payload must stay
// under 4 KB.
const maxActivityMessage = 512

// activityPayload is the aps of an op's Live Activity push. The content state carries the
// event's status, message, severity and attrs (attrs_state), and for PushGo's Apple client
// its names title, state and updatedAt too; attrs are left out when the payload would exceed
// 4 KB.
func activityPayload(rec *busv1.EventRecorded, attributesType string) ([]byte, error) {
	st, env := rec.GetState(), rec.GetEnvelope()
	message := st.GetMessage()
	if utf8.RuneCountInString(message) > maxActivityMessage {
		message = string([]rune(message)[:maxActivityMessage-1]) + "…"
	}
	ts := rec.GetFields().GetEventTime() / 1000
	state := map[string]any{
		"title": st.GetTitle(), "status": st.GetStatus(), "message": message, "severity": st.GetSeverity(),
		"state": st.GetEventState(), "updatedAt": ts, "attrs_state": st.GetAttrs().AsMap(),
	}
	aps := map[string]any{"timestamp": ts, "content-state": state}
	switch rec.GetRoute() {
	case "create":
		title, body := alertText(rec)
		aps["event"] = "start"
		aps["attributes-type"] = attributesType
		aps["attributes"] = map[string]string{"channel_id": env.GetChannelId(), "event_id": env.GetEventId(), "title": st.GetTitle()}
		aps["alert"] = map[string]string{"title": title, "body": body}
	case "close":
		aps["event"] = "end"
		aps["dismissal-date"] = ts + int64(endShownFor/time.Second)
	default:
		aps["event"] = "update"
	}
	b, err := json.Marshal(map[string]any{"aps": aps})
	if err == nil && len(b) > apns.MaxPayload {
		delete(state, "attrs_state")
		b, err = json.Marshal(map[string]any{"aps": aps})
	}
	if err == nil && len(b) > apns.MaxPayload {
		err = errors.New("live activity payload over 4 KB")
	}
	return b, err
}
