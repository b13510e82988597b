package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/proto/webhook"
	"pushgo.dev/gateway/services/dispatch"
	"pushgo.dev/gateway/services/ingest"
)

// TestDispatchCrashMidDelivery stops a dispatch instance while it is delivering an op (its
// webhook call is held open) and before it can record the outcome; a second instance gets the
// domain event again and completes the op: no duplicate inbox item, and the webhook sees the
// same delivery id again.
func TestDispatchCrashMidDelivery(t *testing.T) {
	t.Parallel()
	ns := bustest.RunServer(t)
	g := runIngest(t, ns.ClientURL(), ingest.Config{DispatchWait: 10 * time.Second, WebhookAllowPrivate: true}, nil)
	runLifecycle(t, ns.ClientURL())
	dcfg := dispatch.Config{AckWait: time.Second, Budget: 3 * time.Second, WebhookAllowPrivate: true}
	ncA := conn(t, ns.ClientURL())
	stopA := runDispatch(t, ns.ClientURL(), dcfg, ncA)
	g.waitReady(t)

	// A webhook receiver that holds the first request until released.
	var mu sync.Mutex
	var ids []string
	holding, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		ids = append(ids, r.Header.Get(webhook.HeaderDeliveryID))
		first := len(ids) == 1
		mu.Unlock()
		if first {
			once.Do(func() { close(holding) })
			<-release
		}
	}))
	t.Cleanup(recv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})

	ch := g.channel(t)
	phone := g.device(t, "")
	g.subscribe(t, phone, ch)
	hook := g.device(t, "server")
	g.mustOK(t, "/channel/device", obj{"device_key": hook, "channel_type": "webhook", "provider_token": recv.URL})
	g.subscribe(t, hook, ch)

	body := createBody(ch, obj{"op_id": "crash-1"})
	answered := make(chan response, 1)
	go func() { answered <- g.post(t, "/event/create", body) }()
	select {
	case <-holding: // instance A is inside the webhook call; the phone's inbox append is done
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook was not called")
	}
	// Crash A: its connection goes away, so it can neither record the outcome nor ack.
	ncA.Close()
	close(release)
	stopA()

	runDispatch(t, ns.ClientURL(), dcfg, nil)
	r := <-answered
	if r.status != http.StatusOK {
		// The first request may have given up; a repeat gets the outcome B recorded.
		eventually(t, 15*time.Second, "the outcome", func() bool {
			r = g.post(t, "/event/create", body)
			return r.status == http.StatusOK
		})
	}
	if d := r.data(t)["delivery"].(map[string]any); d["delivered"] != 2.0 {
		t.Fatalf("outcome after the crash: %s", r.raw)
	}
	if n := len(g.pull(t, phone)); n != 1 {
		t.Fatalf("the phone's inbox has %d items after the redelivery, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(ids) != 2 || ids[0] != ids[1] || ids[0] == "" {
		t.Fatalf("webhook delivery ids %v: want the same id twice (before and after the crash)", ids)
	}
}
