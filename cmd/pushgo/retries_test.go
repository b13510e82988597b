package main

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// TestWebhookDownPastTheBudgetGetsThePushLater: a receiver that fails for longer than the
// op's budget gets the push from the durable retry schedule once it is back, under the same
// delivery id; the op's record turns 200, its repeat answers 200 without delivering again, and
// /channel/device/attempts lists every attempt, newest first.
func TestWebhookDownPastTheBudgetGetsThePushLater(t *testing.T) {
	t.Parallel()
	// The wait leaves room for a busy machine under -race: the failing webhook is retried for the
	// whole budget (4/5 of it) before the op answers.
	g := startGateway(t, gatewayOpts{allowPrivate: true, dispatchWait: 4 * time.Second, webhookRetrySchedule: "1s,1s,1s,1s,1s,1s,1s,1s"})
	ch := g.channel(t)
	recv := newHookReceiver(t)
	key := g.hook(t, recv, ch)
	recv.set(http.StatusServiceUnavailable)

	body := createBody(ch, obj{"op_id": "down-create"})
	r := g.post(t, "/event/create", body)
	if r.status != http.StatusServiceUnavailable || r.code() != "dispatch_partial_failure" {
		t.Fatalf("create to a failing webhook: %d %s", r.status, r.raw)
	}
	eventID, _ := r.data(t)["event_id"].(string)
	js := g.jetStream(t)
	rec := opRecord(t, js, ch, "down-create")
	if len(rec.GetReceipts()) != 1 || rec.GetReceipts()[0].GetNextAttemptAt() <= rec.GetUpdatedAt() {
		t.Fatalf("the failed webhook receipt has no retry scheduled after the op: %v", rec)
	}
	// Failed attempts on the schedule come one a second while the receiver is down.
	eventually(t, 15*time.Second, "a scheduled attempt", func() bool {
		_, ids := recv.received()
		return len(ids) >= 2 && len(g.attempts(t, key, 100)) >= len(ids)
	})
	recv.set(http.StatusOK)
	eventually(t, 15*time.Second, "the push after the receiver came back", func() bool {
		got, _ := recv.received()
		return len(got) == 1
	})
	got, ids := recv.received()
	if got[0]["data"].(map[string]any)["event_id"] != eventID {
		t.Fatalf("late push = %v", got[0])
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("the attempts of one delivery changed its id: %v", ids)
		}
	}
	eventually(t, 10*time.Second, "the op record turned 200", func() bool {
		return opRecord(t, js, ch, "down-create").GetOutcome().GetHttpStatus() == http.StatusOK
	})
	rec = opRecord(t, js, ch, "down-create")
	if rc := rec.GetReceipts()[0]; rc.GetStatus() != busv1.ReceiptStatus_RECEIPT_STATUS_DELIVERED || rc.GetNextAttemptAt() != 0 ||
		int(rc.GetAttempts()) != len(ids) {
		t.Fatalf("settled receipt = %v (%d requests)", rc, len(ids))
	}
	r = g.post(t, "/event/create", body)
	if r.status != http.StatusOK || r.data(t)["event_id"] != eventID ||
		!reflect.DeepEqual(r.data(t)["delivery"], map[string]any{"targets": 1.0, "delivered": 1.0, "failed": 0.0}) {
		t.Fatalf("repeat after the late delivery: %d %s", r.status, r.raw)
	}
	if got, _ := recv.received(); len(got) != 1 {
		t.Fatalf("the repeat delivered again: %d pushes", len(got))
	}

	// Every request the receiver saw is listed, newest first: the delivery, then failures
	// that each name the next attempt.
	list := g.attempts(t, key, 100)
	if len(list) != len(ids) {
		t.Fatalf("%d attempts listed, the receiver saw %d requests: %v", len(list), len(ids), list)
	}
	if a := list[0]; a["delivered"] != true || a["status"] != 200.0 || a["error"] != "" || a["delivery_id"] != ids[0] ||
		a["event_id"] != eventID || a["channel_id"] != ch || a["next_attempt_at"] != 0.0 {
		t.Fatalf("newest attempt = %v", a)
	}
	for i, a := range list[1:] {
		if a["delivered"] != false || a["status"] != 503.0 || a["error"] != "webhook_status_503" || a["delivery_id"] != ids[0] {
			t.Fatalf("failed attempt %d = %v", i, a)
		}
		if i == 0 && a["next_attempt_at"].(float64) < a["at"].(float64) {
			t.Fatalf("the failure before the delivery names no next attempt: %v", a)
		}
		if a["at"].(float64) > list[i]["at"].(float64) {
			t.Fatalf("attempts not newest first: %v", list)
		}
	}
	if n := len(g.attempts(t, key, 1)); n != 1 {
		t.Fatalf("limit 1 listed %d", n)
	}
	for _, tc := range []struct {
		body obj
		code string
	}{
		{obj{"device_key": key, "limit": 0}, "invalid_limit"},
		{obj{"device_key": key, "limit": 101}, "invalid_limit"},
		{obj{}, "device_key_required"},
		{obj{"device_key": strings.Repeat("a", 32)}, "device_key_not_found"},
	} {
		if r := g.post(t, "/channel/device/attempts", tc.body); r.code() != tc.code {
			t.Errorf("attempts %v: %d %s, want %s", tc.body, r.status, r.raw, tc.code)
		}
	}
}

// TestWebhookGoneDisablesTheEndpoint: a 410 answer fails the target without a scheduled
// retry and takes the device out of later ops until its route is set again.
func TestWebhookGoneDisablesTheEndpoint(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{allowPrivate: true, dispatchWait: 4 * time.Second, webhookRetrySchedule: "1s"})
	ch := g.channel(t)
	recv := newHookReceiver(t)
	key := g.hook(t, recv, ch)
	recv.set(http.StatusGone)
	r := g.post(t, "/event/create", createBody(ch, obj{"op_id": "gone-create"}))
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("create to a gone webhook: %d %s", r.status, r.raw)
	}
	eventID, _ := r.data(t)["event_id"].(string)
	if rc := opRecord(t, g.jetStream(t), ch, "gone-create").GetReceipts(); len(rc) != 1 || rc[0].GetReason() != "webhook_status_410" || rc[0].GetNextAttemptAt() != 0 {
		t.Fatalf("receipt of a 410 = %v", rc)
	}
	if _, ids := recv.received(); len(ids) != 1 {
		t.Fatalf("a 410 was tried %d times", len(ids))
	}
	if list := g.attempts(t, key, 10); len(list) != 1 || list[0]["status"] != 410.0 || list[0]["next_attempt_at"] != 0.0 {
		t.Fatalf("attempts of a 410: %v", list)
	}
	eventually(t, 10*time.Second, "the device left out of the next op", func() bool {
		r := g.post(t, "/event/update", opBody(ch, eventID, obj{"event_time": time.Now().UnixMilli()}))
		return r.status == http.StatusOK && r.data(t)["delivery"].(map[string]any)["targets"] == 0.0
	})
	// Setting the route again turns the endpoint back on.
	recv.set(http.StatusOK)
	g.hook2(t, recv, key)
	eventually(t, 10*time.Second, "the device a target again once its route was set", func() bool {
		d := g.mustOK(t, "/event/update", opBody(ch, eventID, obj{"event_time": time.Now().UnixMilli()}))
		return reflect.DeepEqual(d["delivery"], map[string]any{"targets": 1.0, "delivered": 1.0, "failed": 0.0})
	})
}

// TestWebhookRetrySurvivesRestart: a delivery scheduled for later is made by the next life of
// `pushgo serve` (broker and services restarted on the same data directory), and the op's
// repeat then answers 200.
func TestWebhookRetrySurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	recv := newHookReceiver(t)
	recv.set(http.StatusInternalServerError)
	serve := func() (*proc, *gateway) {
		addr := freeAddr(t)
		p := start(t, "serve", "--data-dir", dir, "--http-addr", addr, "--grpc-addr", "", "--webhook-allow-private",
			"--dispatch-wait", "4s", "--webhook-retry-schedule", "4s")
		g := &gateway{url: "http://" + addr}
		g.waitReady(t)
		return p, g
	}
	p, g := serve()
	ch := g.channel(t)
	g.hook(t, recv, ch)
	body := createBody(ch, obj{"op_id": "restart-hook"})
	if r := g.post(t, "/event/create", body); r.status != http.StatusServiceUnavailable {
		t.Fatalf("create to a failing webhook: %d %s", r.status, r.raw)
	}
	p.stop(t)
	recv.set(http.StatusOK) // back while the gateway is down: only its next life can deliver

	p, g = serve()
	eventually(t, 20*time.Second, "the push from the restarted gateway", func() bool {
		got, _ := recv.received()
		return len(got) == 1
	})
	eventually(t, 10*time.Second, "the op's repeat answered 200", func() bool {
		return g.post(t, "/event/create", body).status == http.StatusOK
	})
	if got, _ := recv.received(); len(got) != 1 {
		t.Fatalf("%d pushes, want 1", len(got))
	}
	p.stop(t)
}

// attempts lists a device's webhook attempts (POST /channel/device/attempts).
func (g *gateway) attempts(t *testing.T, key string, limit int) []map[string]any {
	t.Helper()
	d := g.mustOK(t, "/channel/device/attempts", obj{"device_key": key, "limit": limit})
	raw, _ := d["attempts"].([]any)
	out := make([]map[string]any, len(raw))
	for i, a := range raw {
		out[i], _ = a.(map[string]any)
	}
	return out
}

// hook2 sets device key's webhook route to h again, taking the new secret.
func (g *gateway) hook2(t *testing.T, h *hookReceiver, key string) {
	t.Helper()
	d := g.mustOK(t, "/channel/device", obj{"device_key": key, "channel_type": "webhook", "provider_token": h.srv.URL + "/hook"})
	h.mu.Lock()
	h.secret, _ = d["webhook_secret"].(string)
	h.mu.Unlock()
}

// opRecord reads an op's record straight from the ops bucket.
func opRecord(t *testing.T, js jetstream.JetStream, ch, opID string) *busv1.OpRecord {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), bus.BucketOps)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(t.Context(), bus.OpKey(ch, opID))
	if err != nil {
		t.Fatal(err)
	}
	rec := &busv1.OpRecord{}
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		t.Fatal(err)
	}
	return rec
}
