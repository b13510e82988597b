package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/fakes/apnsfake"
)

// TestLiveActivityFollowsTheEvent: a device's push-to-start token starts a Live Activity when
// an event is created; the activity's token, registered through PushGo's client alias with its
// camelCase names, gets the updates (a late one is not sent) and the end, after which the
// token is dropped. Each push is a target of its op, beside the device's own route.
func TestLiveActivityFollowsTheEvent(t *testing.T) {
	t.Parallel()
	fake := apnsfake.New(t)
	g := startGateway(t, gatewayOpts{apns: fake})
	ch := g.channel(t)
	key := g.device(t, "ios") // route private: the activity is beside it
	g.subscribe(t, key, ch)
	start, activity := strings.Repeat("5a", 32), strings.Repeat("a5", 32)
	if d := g.mustOK(t, "/activity/register", obj{"device_key": key, "push_to_start_token": start}); d["kind"] != "push_to_start" || d["changed"] != true {
		t.Fatalf("register the push-to-start token: %v", d)
	}

	created := g.mustOK(t, "/event/create", createBody(ch, nil))
	ev := created["event_id"].(string)
	if d := created["delivery"].(map[string]any); d["targets"] != 2.0 || d["delivered"] != 2.0 {
		t.Fatalf("create delivery %v, want the inbox and the activity", d)
	}
	got := fake.Received(start)
	if len(got) != 1 || got[0].PushType != "liveactivity" || got[0].Topic != apnsfake.Topic+".push-type.liveactivity" {
		t.Fatalf("start pushes %+v; refused %v", got, fake.Refused())
	}
	aps := got[0].Payload["aps"].(map[string]any)
	cs := aps["content-state"].(map[string]any)
	if aps["event"] != "start" || aps["attributes-type"] != "PushGoEventAttributes" || aps["timestamp"] != 1713750000.0 ||
		aps["attributes"].(map[string]any)["event_id"] != ev || aps["alert"].(map[string]any)["title"] != "deploy api" ||
		cs["status"] != "running" || cs["message"] != "started" || cs["title"] != "deploy api" {
		t.Fatalf("start payload %v", got[0].Payload)
	}

	// The activity started on the phone registers its token, as PushGo's Apple client does.
	if d := g.mustOK(t, "/v1/activity/register", obj{"deviceKey": key, "activityKey": "event:" + ev, "channelID": ch,
		"token": activity, "platform": "ios", "schemaVersion": 1}); d["kind"] != "activity" || d["event_id"] != ev {
		t.Fatalf("register the activity: %v", d)
	}
	g.mustOK(t, "/event/update", opBody(ch, ev, obj{"message": "halfway", "attrs": obj{"progress": 0.5}}))
	late := g.mustOK(t, "/event/update", opBody(ch, ev, obj{"message": "stale", "event_time": 1713750100000}))
	if late["applied"] != false {
		t.Fatalf("the late update: %v", late)
	}
	g.mustOK(t, "/event/close", opBody(ch, ev, obj{"status": "done", "message": "shipped", "event_time": 1713750600000}))
	got = fake.Received(activity)
	if len(got) != 2 {
		t.Fatalf("the activity got %d pushes, want the update and the end (not the late update): %+v", len(got), got)
	}
	up, end := got[0].Payload["aps"].(map[string]any), got[1].Payload["aps"].(map[string]any)
	upState := up["content-state"].(map[string]any)
	if up["event"] != "update" || up["timestamp"] != 1713750300.0 || upState["message"] != "halfway" ||
		upState["attrs_state"].(map[string]any)["progress"] != 0.5 {
		t.Fatalf("update payload %v", got[0].Payload)
	}
	if end["event"] != "end" || end["timestamp"] != 1713750600.0 || end["dismissal-date"] != 1713754200.0 ||
		end["content-state"].(map[string]any)["status"] != "done" {
		t.Fatalf("end payload %v", got[1].Payload)
	}
	eventually(t, 10*time.Second, "the ended activity's token dropped", func() bool {
		_, rec := storedDevice(t, deviceKV(t, g), key)
		return len(rec.GetActivities()) == 0
	})

	// Without the push-to-start token, a create starts nothing.
	if d := g.mustOK(t, "/activity/unregister", obj{"device_key": key, "push_to_start_token": ""}); d["changed"] != true {
		t.Fatalf("unregister: %v", d)
	}
	eventually(t, 10*time.Second, "a create without an activity", func() bool {
		d := g.mustOK(t, "/event/create", createBody(ch, nil))
		return d["delivery"].(map[string]any)["targets"] == 1.0
	})
	if n := len(fake.Refused()); n != 0 {
		t.Fatalf("the fake refused %d pushes: %v", n, fake.Refused())
	}
}

// TestLiveActivityErrors: every refusal of the activity routes.
func TestLiveActivityErrors(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	ch, other := g.channel(t), g.channel(t)
	ios, android := g.device(t, "ios"), g.device(t, "android")
	g.subscribe(t, ios, ch)
	tok := strings.Repeat("ab", 32)
	for _, tt := range []struct {
		name, path string
		body       obj
		status     int
		code       string
	}{
		{"android", "/activity/register", obj{"device_key": android, "push_to_start_token": tok}, 400, "live_activity_requires_ios"},
		{"both forms", "/activity/register", obj{"device_key": ios, "push_to_start_token": tok, "event_id": "e1"}, 400, "invalid_activity_request"},
		{"activity key", "/activity/register", obj{"device_key": ios, "channel_id": ch, "activity_key": "thing:1", "token": tok}, 400, "invalid_activity_key"},
		{"keys disagree", "/activity/register", obj{"device_key": ios, "channel_id": ch, "activity_key": "event:a", "event_id": "b", "token": tok}, 400, "invalid_activity_key"},
		{"no token", "/activity/register", obj{"device_key": ios, "channel_id": ch, "event_id": "e1"}, 400, "activity_token_required"},
		{"empty start token", "/activity/register", obj{"device_key": ios, "push_to_start_token": " "}, 400, "activity_token_required"},
		{"not hex", "/activity/register", obj{"device_key": ios, "push_to_start_token": "zz"}, 400, "invalid_activity_token"},
		{"not subscribed", "/activity/register", obj{"device_key": ios, "channel_id": other, "event_id": "e1", "activity_token": tok}, 403, "device_not_subscribed"},
		{"no event", "/activity/unregister", obj{"device_key": ios, "channel_id": ch}, 400, "event_id_required"},
		{"no channel", "/v1/activity/register", obj{"deviceKey": ios, "activityKey": "event:e1", "token": tok}, 400, "channel_id_required"},
		{"unknown field", "/v1/activity/register", obj{"deviceKey": ios, "activityKind": "x"}, 400, "unknown_field"},
	} {
		if r := g.post(t, tt.path, tt.body); r.status != tt.status || r.code() != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.status, r.raw, tt.status, tt.code)
		}
	}
	// Unregistering what is not there is not an error.
	if d := g.mustOK(t, "/activity/unregister", obj{"device_key": ios, "channel_id": ch, "event_id": "e1"}); d["changed"] != false {
		t.Fatalf("unregister of nothing: %v", d)
	}
	if r := g.post(t, "/activity/register", obj{"device_key": ios, "push_to_start_token": tok}); r.status != http.StatusOK {
		t.Fatalf("register: %d %s", r.status, r.raw)
	}
}
