package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/fakes/apnsfake"
	"pushgo.dev/gateway/proto/fakes/fcmfake"
)

// apnsDevice registers an iOS device on route apns with token and subscribes it to ch.
func (g *gateway) apnsDevice(t *testing.T, token, ch string) string {
	t.Helper()
	key := g.device(t, "ios")
	g.mustOK(t, "/channel/device", obj{"device_key": key, "channel_type": "apns", "provider_token": token})
	g.subscribe(t, key, ch)
	return key
}

// TestAPNsGetsEveryStepInOrder: create, update and close of an event reach an APNs device as
// alerts, in order, through the fake (which checks the provider token with the key's public
// half, the topic, the push type, HTTP/2 and the payload): title and "status: message", the
// event id as collapse and thread id, priority by severity, the data map as custom keys.
func TestAPNsGetsEveryStepInOrder(t *testing.T) {
	t.Parallel()
	fake := apnsfake.New(t)
	g := startGateway(t, gatewayOpts{apns: fake})
	ch := g.channel(t)
	token := strings.Repeat("ab", 32)
	g.apnsDevice(t, token, ch)

	ev := g.mustOK(t, "/event/create", createBody(ch, nil))["event_id"].(string)
	g.mustOK(t, "/event/update", opBody(ch, ev, obj{"severity": "critical", "message": "disk full"}))
	g.mustOK(t, "/event/close", opBody(ch, ev, obj{"status": "done", "message": "rolled back", "event_time": 1713750600000}))

	got := fake.Received(token)
	if len(got) != 3 {
		t.Fatalf("APNs got %d pushes, want 3; refused: %v", len(got), fake.Refused())
	}
	for i, want := range []struct{ body, priority, state, version string }{
		{"running: started", "5", "ONGOING", "1"},
		{"progress: disk full", "10", "ONGOING", "2"},
		{"done: rolled back", "5", "CLOSED", "3"},
	} {
		n := got[i]
		aps := n.Payload["aps"].(map[string]any)
		alert := aps["alert"].(map[string]any)
		if alert["title"] != "deploy api" || alert["body"] != want.body || n.Priority != want.priority ||
			n.CollapseID != ev || aps["thread-id"] != ev || n.PushType != "alert" ||
			n.Payload["event_id"] != ev || n.Payload["event_state"] != want.state || n.Payload["event_version"] != want.version {
			t.Errorf("push %d: %+v, want body %q, priority %s, state %s, version %s", i, n, want.body, want.priority, want.state, want.version)
		}
	}
}

// TestAPNsThrottledThenAccepted: a 429 (and a 503) are retried within the op's budget, and
// the push is delivered once.
func TestAPNsThrottledThenAccepted(t *testing.T) {
	t.Parallel()
	fake := apnsfake.New(t)
	g := startGateway(t, gatewayOpts{apns: fake})
	ch := g.channel(t)
	token := strings.Repeat("cd", 32)
	g.apnsDevice(t, token, ch)
	fake.Answer(token, apnsfake.Answer{Status: http.StatusTooManyRequests, Reason: "TooManyRequests"},
		apnsfake.Answer{Status: http.StatusServiceUnavailable, Reason: "ServiceUnavailable"})
	g.mustOK(t, "/event/create", createBody(ch, nil))
	if got := fake.Received(token); len(got) != 1 {
		t.Fatalf("APNs accepted %d pushes, want 1", len(got))
	}
}

// TestAPNsUnregisteredInvalidatesTheRoute: a token APNs calls unregistered makes the op a 503
// with the reason in the receipt, without retries; later ops no longer target the device,
// until it sets its route again.
func TestAPNsUnregisteredInvalidatesTheRoute(t *testing.T) {
	t.Parallel()
	fake := apnsfake.New(t)
	g := startGateway(t, gatewayOpts{apns: fake})
	ch := g.channel(t)
	token := strings.Repeat("ef", 32)
	key := g.apnsDevice(t, token, ch)
	fake.Answer(token, apnsfake.Answer{Status: http.StatusGone, Reason: "Unregistered"})
	r := g.post(t, "/event/create", createBody(ch, obj{"op_id": "gone"}))
	if r.code() != "dispatch_partial_failure" {
		t.Fatalf("unregistered token: %d %s", r.status, r.raw)
	}
	if rc := opReceipts(t, g, ch, "gone"); rc["apns"] != "FAILED apns_unregistered" {
		t.Fatalf("receipts %v", rc)
	}
	ev := r.data(t)["event_id"].(string)
	targets := func(op string) float64 {
		d := g.mustOK(t, "/event/update", opBody(ch, ev, obj{"op_id": op}))
		return d["delivery"].(map[string]any)["targets"].(float64)
	}
	n := 0
	eventually(t, 10*time.Second, "the device left out of later ops", func() bool {
		n++
		return targets(fmt.Sprint("after-", n)) == 0
	})
	if got := fake.Received(token); len(got) != 0 {
		t.Fatalf("APNs accepted %d pushes to a dead token", len(got))
	}
	// A new token (the app registered again): targeted and delivered again.
	fresh := strings.Repeat("12", 32)
	g.mustOK(t, "/channel/device", obj{"device_key": key, "channel_type": "apns", "provider_token": fresh})
	eventually(t, 10*time.Second, "the device targeted again", func() bool {
		n++
		return targets(fmt.Sprint("after-", n)) == 1
	})
	if got := fake.Received(fresh); len(got) == 0 {
		t.Fatal("nothing reached the new token")
	}
	if refused := fake.Refused(); len(refused) != 0 {
		t.Fatalf("the fake refused: %v", refused)
	}
}

// fcmDevice registers an Android device on route fcm with token and subscribes it to ch.
func (g *gateway) fcmDevice(t *testing.T, token, ch string) string {
	t.Helper()
	key := g.device(t, "android")
	g.mustOK(t, "/channel/device", obj{"device_key": key, "channel_type": "fcm", "provider_token": token})
	g.subscribe(t, key, ch)
	return key
}

// TestFCMGetsEveryStepInOrder: create, update and close reach an FCM device in order through
// the fake (which checks the service account's assertion, the bearer token and the message):
// the data map as data, the alert as notification, priority by severity, the event id as
// collapse key. An APNs device of the same channel gets them too.
func TestFCMGetsEveryStepInOrder(t *testing.T) {
	t.Parallel()
	fake, apple := fcmfake.New(t), apnsfake.New(t)
	g := startGateway(t, gatewayOpts{fcm: fake, apns: apple})
	ch := g.channel(t)
	token := "fcm-token-" + strings.Repeat("x", 140)
	g.fcmDevice(t, token, ch)
	g.apnsDevice(t, strings.Repeat("ab", 32), ch)

	ev := g.mustOK(t, "/event/create", createBody(ch, nil))["event_id"].(string)
	g.mustOK(t, "/event/update", opBody(ch, ev, obj{"severity": "high", "message": "slow"}))
	d := g.mustOK(t, "/event/close", opBody(ch, ev, obj{"status": "done", "message": "ok", "event_time": 1713750600000}))
	if d["delivery"].(map[string]any)["delivered"] != 2.0 {
		t.Fatalf("close delivered %v, want 2 targets", d["delivery"])
	}
	got := fake.Received(token)
	if len(got) != 3 {
		t.Fatalf("FCM got %d messages, want 3; refused: %v", len(got), fake.Refused())
	}
	for i, want := range []struct{ body, priority, version string }{
		{"running: started", "normal", "1"},
		{"progress: slow", "high", "2"},
		{"done: ok", "normal", "3"},
	} {
		m := got[i]
		if m.Notification["title"] != "deploy api" || m.Notification["body"] != want.body || m.Priority != want.priority ||
			m.CollapseKey != ev || m.Data["event_id"] != ev || m.Data["event_version"] != want.version || m.Data["delivery_id"] == "" {
			t.Errorf("message %d: %+v, want body %q, priority %s, version %s", i, m, want.body, want.priority, want.version)
		}
	}
	if n := len(apple.Received("")); n != 3 {
		t.Fatalf("APNs got %d pushes, want 3", n)
	}
}

// TestFCMUnregisteredAndRetried: QUOTA_EXCEEDED then UNAVAILABLE are retried and delivered
// once; UNREGISTERED fails the target and later ops leave the device out.
func TestFCMUnregisteredAndRetried(t *testing.T) {
	t.Parallel()
	fake := fcmfake.New(t)
	g := startGateway(t, gatewayOpts{fcm: fake})
	ch := g.channel(t)
	token := "fcm-token-" + strings.Repeat("y", 140)
	g.fcmDevice(t, token, ch)
	fake.Answer(token, fcmfake.Answer{Status: http.StatusTooManyRequests, ErrorCode: "QUOTA_EXCEEDED"},
		fcmfake.Answer{Status: http.StatusServiceUnavailable, ErrorCode: "UNAVAILABLE"})
	ev := g.mustOK(t, "/event/create", createBody(ch, nil))["event_id"].(string)
	if n := len(fake.Received(token)); n != 1 {
		t.Fatalf("FCM accepted %d messages, want 1", n)
	}
	fake.Answer(token, fcmfake.Answer{Status: http.StatusNotFound, ErrorCode: "UNREGISTERED"})
	r := g.post(t, "/event/update", opBody(ch, ev, obj{"op_id": "fcm-gone"}))
	if r.code() != "dispatch_partial_failure" {
		t.Fatalf("unregistered token: %d %s", r.status, r.raw)
	}
	if rc := opReceipts(t, g, ch, "fcm-gone"); rc["fcm"] != "FAILED fcm_unregistered" {
		t.Fatalf("receipts %v", rc)
	}
	n := 0
	eventually(t, 10*time.Second, "the device left out of later ops", func() bool {
		n++
		d := g.mustOK(t, "/event/update", opBody(ch, ev, obj{"op_id": fmt.Sprint("later-", n)}))
		return d["delivery"].(map[string]any)["targets"] == 0.0
	})
	if n := len(fake.Received(token)); n != 1 {
		t.Fatalf("FCM accepted %d messages after the token died, want the 1 before", n)
	}
}

// TestSlowProviderHoldsNoOtherTargetBack: while APNs takes its time over an op, the op's
// webhook and inbox targets of the same op are already delivered; the op then answers 200.
func TestSlowProviderHoldsNoOtherTargetBack(t *testing.T) {
	t.Parallel()
	fake := apnsfake.New(t)
	fake.Delay(3 * time.Second) // within the delivery budget (4 s)
	g := startGateway(t, gatewayOpts{apns: fake, allowPrivate: true})
	ch := g.channel(t)
	token := strings.Repeat("9f", 32)
	g.apnsDevice(t, token, ch)
	phone := g.device(t, "")
	g.subscribe(t, phone, ch)
	recv := newHookReceiver(t)
	g.hook(t, recv, ch)

	answered := make(chan response, 1)
	go func() { answered <- g.post(t, "/event/create", createBody(ch, nil)) }()
	eventually(t, 10*time.Second, "the webhook and the inbox served", func() bool {
		got, _ := recv.received()
		return len(got) == 1 && len(g.pull(t, phone)) == 1
	})
	if n := len(fake.Received(token)); n != 0 {
		t.Fatalf("APNs answered (%d) before the other targets were checked: the test proves nothing", n)
	}
	select {
	case r := <-answered:
		t.Fatalf("the op answered %d before APNs did", r.status)
	default:
	}
	select {
	case r := <-answered:
		if r.status != http.StatusOK || r.data(t)["delivery"].(map[string]any)["delivered"] != 3.0 {
			t.Fatalf("op: %d %s", r.status, r.raw)
		}
	case <-time.After(30 * time.Second): // the request failed (post ended its goroutine)
		t.Fatal("no answer to the op")
	}
}
