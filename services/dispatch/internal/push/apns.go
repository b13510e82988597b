package push

import (
	"context"
	"strings"
	"unicode"

	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/dispatch/internal/apns"
)

// wakeKeys are the data map entries an APNs alert keeps when the whole push exceeds 4 KB:
// what the app needs to pull the full push from the device's inbox.
var wakeKeys = []string{"schema_version", "payload_version", "channel_id", "delivery_id", "op_id", "sent_at",
	"entity_type", "entity_id", "event_id", "event_state", "event_version", "title", "severity", "thing_id"}

// apnsSender sends the alert push of an op to a device on route apns (DESIGN.md §10.1): the
// event's title, "status: message" as the body, the event id as collapse id (a newer step
// replaces the shown one) and thread id, priority 10 for critical and high severity (5
// otherwise), and the data map as custom keys.
type apnsSender struct {
	client *apns.Client
}

// send delivers one alert, retrying 429, 5xx, no answer and an expired provider token with
// back-off until ctx's deadline. invalid reports a token APNs will never take again.
func (s *apnsSender) send(ctx context.Context, token string, rec *busv1.EventRecorded, data map[string]string) (attempts int, why string, invalid bool) {
	st, ev := rec.GetState(), rec.GetEnvelope().GetEventId()
	title, body := alertText(rec)
	payload, ok := apns.AlertPayload(apns.Alert{Title: title, Body: body, ThreadID: ev, Severity: st.GetSeverity(), Data: data, Wake: wakeKeys})
	if !ok {
		return 0, "apns_payload_too_large", false
	}
	n := apns.Notification{Token: token, PushType: apns.PushTypeAlert, Priority: 5, Payload: payload}
	if urgent(rec) {
		n.Priority = 10
	}
	if len(ev) <= 64 {
		n.CollapseID = ev
	}
	return sendRetrying(ctx, "apns_", func(ctx context.Context) apns.Result { return s.client.Send(ctx, n) })
}

// alertText is what a phone shows for an op: the event's title ("Event <id>" when it has
// none, as PushGo does) and "status: message" (either alone when the other is empty).
func alertText(rec *busv1.EventRecorded) (title, body string) {
	st := rec.GetState()
	title = strings.TrimSpace(st.GetTitle())
	if title == "" {
		title = "Event " + rec.GetEnvelope().GetEventId()
	}
	status, message := strings.TrimSpace(st.GetStatus()), strings.TrimSpace(st.GetMessage())
	switch {
	case status != "" && message != "":
		body = status + ": " + message
	case status != "":
		body = status
	default:
		body = message
	}
	return title, body
}

// urgent reports an op whose push should interrupt: severity critical or high.
func urgent(rec *busv1.EventRecorded) bool {
	sev := rec.GetState().GetSeverity()
	return sev == "critical" || sev == "high"
}

// providerReason is a receipt reason from a provider's: prefix + snake_case of Apple's or
// Google's CamelCase or UPPER_CASE reason ("BadDeviceToken" → "apns_bad_device_token"); a
// reason that already has the prefix (a transport failure) is kept.
func providerReason(prefix, reason string) string {
	if strings.HasPrefix(reason, prefix) {
		return reason
	}
	var b strings.Builder
	b.WriteString(prefix)
	prevLower := false
	for _, r := range reason {
		switch {
		case unicode.IsUpper(r):
			if prevLower {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			prevLower = false
		case unicode.IsLower(r) || unicode.IsDigit(r):
			b.WriteRune(r)
			prevLower = true
		default:
			b.WriteByte('_')
			prevLower = false
		}
	}
	return b.String()
}
