package push

import (
	"context"
	"encoding/json"

	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/dispatch/internal/fcm"
)

// fcmMaxData bounds the encoded data of an FCM message (FCM refuses more than 4096 bytes of
// message payload); beyond it the message carries the wake keys only, as APNs alerts do.
const fcmMaxData = 4000

// fcmSender sends an op to a device on route fcm (DESIGN.md §10.2): the data map as data, a
// notification block with the alert's title and body, android priority high for critical and
// high severity, and the event id as collapse key.
type fcmSender struct {
	client *fcm.Client
}

// send delivers one message, retrying no answer, 401, 429 and 5xx with back-off until ctx's
// deadline (honouring Retry-After). invalid reports a registration token FCM will never take.
func (s *fcmSender) send(ctx context.Context, token string, rec *busv1.EventRecorded, data map[string]string) (attempts int, why string, invalid bool) {
	title, body := alertText(rec)
	m := fcm.Message{Token: token, Data: data, Title: title, Body: body, High: urgent(rec), CollapseKey: rec.GetEnvelope().GetEventId()}
	if b, err := json.Marshal(data); err != nil || len(b) > fcmMaxData {
		m.Data = map[string]string{"provider_mode": "wakeup"}
		for _, k := range wakeKeys {
			if v, ok := data[k]; ok {
				m.Data[k] = v
			}
		}
	}
	return sendRetrying(ctx, "fcm_", func(ctx context.Context) fcm.Result { return s.client.Send(ctx, m) })
}
