package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/fakes/apnsfake"
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
