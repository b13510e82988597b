package push

import (
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/dispatch/internal/apns"
)

func TestActivityPayload(t *testing.T) {
	t.Parallel()
	attrs, err := structpb.NewStruct(map[string]any{"progress": 0.5, "big": strings.Repeat("x", 5000)})
	if err != nil {
		t.Fatal(err)
	}
	small, err := structpb.NewStruct(map[string]any{"progress": 0.5})
	if err != nil {
		t.Fatal(err)
	}
	rec := func(route string, a *structpb.Struct, message string) *busv1.EventRecorded {
		return &busv1.EventRecorded{Route: route, Envelope: &busv1.Envelope{ChannelId: "C", EventId: "ev"},
			Fields: &apiv1.EventFields{EventTime: 1713750000123},
			State:  &apiv1.Event{Title: "Deploy", Status: "running", Message: message, Severity: "high", EventState: "ONGOING", Attrs: a}}
	}
	for _, tt := range []struct {
		name, route, event string
		attrs              *structpb.Struct
		message            string
		keepsAttrs         bool
	}{
		{"start", "create", "start", small, "go", true},
		{"update", "update", "update", small, "go", true},
		{"end", "close", "end", small, "go", true},
		{"attrs over 4 KB are left out", "update", "update", attrs, "go", false},
		{"a long message is cut", "update", "update", small, strings.Repeat("m", 3000), true},
	} {
		b, err := activityPayload(rec(tt.route, tt.attrs, tt.message), "Attrs")
		if err != nil || len(b) > apns.MaxPayload {
			t.Fatalf("%s: %d bytes, %v", tt.name, len(b), err)
		}
		var m struct {
			APS map[string]any `json:"aps"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		cs := m.APS["content-state"].(map[string]any)
		_, hasAttrs := cs["attrs_state"]
		if m.APS["event"] != tt.event || m.APS["timestamp"] != 1713750000.0 || hasAttrs != tt.keepsAttrs ||
			len([]rune(cs["message"].(string))) > maxActivityMessage {
			t.Errorf("%s: %s", tt.name, b)
		}
		_, hasAlert := m.APS["alert"]
		_, hasDismissal := m.APS["dismissal-date"]
		if hasAlert != (tt.route == "create") || hasDismissal != (tt.route == "close") || (tt.route == "create") != (m.APS["attributes-type"] == "Attrs") {
			t.Errorf("%s: alert %v, dismissal-date %v: %s", tt.name, hasAlert, hasDismissal, b)
		}
	}
}
