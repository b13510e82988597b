package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"pushgo.dev/gateway/proto/webhook"
)

// device registers a device (platform ios unless given) and returns its key.
func (g *gateway) device(t testing.TB, platform string) string {
	t.Helper()
	if platform == "" {
		platform = "ios"
	}
	return g.mustOK(t, "/device/register", obj{"platform": platform})["device_key"].(string)
}

func (g *gateway) subscribe(t testing.TB, key, ch string) {
	t.Helper()
	g.mustOK(t, "/channel/subscribe", obj{"device_key": key, "channel_id": ch, "password": "secret-123"})
}

// pull returns a device's inbox items.
func (g *gateway) pull(t testing.TB, key string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, it := range g.mustOK(t, "/messages/pull", obj{"device_key": key, "limit": 500})["items"].([]any) {
		out = append(out, it.(map[string]any))
	}
	return out
}

func payload(item map[string]any) map[string]any { return item["payload"].(map[string]any) }

// TestTwoDevicesReceiveEveryStepInOrder is the delivery path of DESIGN.md §5 through HTTP.
func TestTwoDevicesReceiveEveryStepInOrder(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	ch := g.channel(t)
	a, b, gone, other := g.device(t, "ios"), g.device(t, "android"), g.device(t, "web"), g.device(t, "")
	for _, k := range []string{a, b, gone} {
		g.subscribe(t, k, ch)
	}
	if d := g.mustOK(t, "/channel/unsubscribe", obj{"device_key": gone, "channel_id": ch}); d["removed"] != true {
		t.Fatalf("unsubscribe = %v", d)
	}
	if d := g.mustOK(t, "/channel/unsubscribe", obj{"device_key": gone, "channel_id": ch}); d["removed"] != false {
		t.Fatalf("second unsubscribe = %v", d)
	}

	c := g.mustOK(t, "/event/create", createBody(ch, obj{"thing_id": "db-1", "attrs": obj{"service": "api", "progress": 0},
		"tags": []any{"prod"}, "metadata": obj{"run": 7}, "ciphertext": "opaque=="}))
	if c["delivery"].(map[string]any)["targets"] != 2.0 || c["delivery"].(map[string]any)["delivered"] != 2.0 {
		t.Fatalf("create delivery = %v", c["delivery"])
	}
	ev := c["event_id"].(string)
	g.mustOK(t, "/event/update", opBody(ch, ev, obj{"event_time": 1713750100000, "attrs": obj{"progress": 0.5, "service": nil}}))
	late := g.mustOK(t, "/event/update", opBody(ch, ev, obj{"event_time": 1713700000000}))
	if late["applied"] != false || late["delivery"].(map[string]any)["targets"] != 0.0 {
		t.Fatalf("late update = %v", late)
	}
	g.mustOK(t, "/event/update", opBody(ch, ev, obj{"event_time": 1713750200000, "title": "renamed"}))
	g.mustOK(t, "/event/close", opBody(ch, ev, obj{"event_time": 1713750300000, "status": "done"}))

	ids := map[string]bool{}
	for _, key := range []string{a, b} {
		items := g.pull(t, key)
		var versions, states []string
		for _, it := range items {
			p := payload(it)
			versions = append(versions, p["event_version"].(string))
			states = append(states, p["event_state"].(string))
			if p["delivery_id"] != it["delivery_id"] || ids[it["delivery_id"].(string)] {
				t.Fatalf("delivery id %v not unique per device and op", it["delivery_id"])
			}
			ids[it["delivery_id"].(string)] = true
		}
		if !reflect.DeepEqual(versions, []string{"1", "2", "3", "4"}) || !reflect.DeepEqual(states, []string{"ONGOING", "ONGOING", "ONGOING", "CLOSED"}) {
			t.Fatalf("device %s got versions %v states %v", key, versions, states)
		}
		first, second, third := payload(items[0]), payload(items[1]), payload(items[2])
		want := map[string]any{"channel_id": ch, "entity_type": "event", "entity_id": ev, "event_id": ev, "title": "deploy api",
			"body": "started", "status": "running", "message": "started", "severity": "normal", "thing_id": "db-1",
			"event_time": "1713750000000", "occurred_at": "1713750000000", "started_at": "1713750000000",
			"tags": `["prod"]`, "attrs": `{"progress":0,"service":"api"}`, "attrs_state": `{"progress":0,"service":"api"}`,
			"metadata": `{"run":7}`, "ciphertext": "opaque==", "schema_version": "1", "payload_version": "1"}
		for k, v := range want {
			if first[k] != v {
				t.Errorf("create push %s = %v, want %v", k, first[k], v)
			}
		}
		if second["attrs"] != `{"progress":0.5,"service":null}` || second["attrs_state"] != `{"progress":0.5}` || second["title"] != "deploy api" {
			t.Errorf("update push attrs %v attrs_state %v title %v", second["attrs"], second["attrs_state"], second["title"])
		}
		if _, ok := second["metadata"]; ok {
			t.Errorf("metadata belongs to the op, not the event: %v", second["metadata"])
		}
		if third["title"] != "renamed" || payload(items[3])["ended_at"] != "1713750300000" {
			t.Errorf("third title %v, close ended_at %v", third["title"], payload(items[3])["ended_at"])
		}
	}
	for _, key := range []string{gone, other} {
		if items := g.pull(t, key); len(items) != 0 {
			t.Fatalf("device %s, not subscribed, got %d items", key, len(items))
		}
	}

	// Ack removes; removed items never come back; a second ack is a no-op.
	items := g.pull(t, a)
	if d := g.mustOK(t, "/messages/ack", obj{"device_key": a, "delivery_id": items[1]["delivery_id"]}); d["removed"] != true {
		t.Fatalf("ack = %v", d)
	}
	if d := g.mustOK(t, "/messages/ack", obj{"device_key": a, "delivery_id": items[1]["delivery_id"]}); d["removed"] != false {
		t.Fatalf("second ack = %v", d)
	}
	if d := g.mustOK(t, "/messages/ack", obj{"device_key": b, "delivery_id": items[2]["delivery_id"]}); d["removed"] != false {
		t.Fatalf("ack of another device's item = %v", d)
	}
	left := g.pull(t, a)
	if len(left) != 3 || left[0]["seq"] != items[0]["seq"] || left[1]["seq"] != items[2]["seq"] {
		t.Fatalf("after ack: %d items %v", len(left), left)
	}
	if n := len(g.pull(t, b)); n != 4 {
		t.Fatalf("the other device lost items: %d", n)
	}
}

// TestInboxCap: at the cap the oldest item is dropped and the op still counts as delivered.
func TestInboxCap(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{inboxPerDevice: 3})
	ch := g.channel(t)
	key := g.device(t, "")
	g.subscribe(t, key, ch)
	ev := g.mustOK(t, "/event/create", createBody(ch, nil))["event_id"].(string)
	for i := range 4 {
		d := g.mustOK(t, "/event/update", opBody(ch, ev, obj{"event_time": 1713750000001 + i}))
		if d["accepted"] != true {
			t.Fatalf("update %d at the cap: %v", i, d)
		}
	}
	var versions []string
	for _, it := range g.pull(t, key) {
		versions = append(versions, payload(it)["event_version"].(string))
	}
	if !reflect.DeepEqual(versions, []string{"3", "4", "5"}) {
		t.Fatalf("inbox holds versions %v, want the newest three", versions)
	}
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	id   string
	data map[string]any
}

// openSSE connects to /device/stream and returns its events as they come.
func openSSE(t *testing.T, g *gateway, key, lastEventID string) (<-chan sseEvent, func()) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, g.url+"/device/stream?device_key="+key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	events := make(chan sseEvent, 64)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "id: "):
				ev.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "data: "):
				_ = json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev.data)
			case line == "" && ev.data != nil:
				events <- ev
				ev = sseEvent{}
			}
		}
	}()
	return events, func() { _ = resp.Body.Close() }
}

func next(t *testing.T, events <-chan sseEvent) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10s")
	}
	return sseEvent{}
}

// TestLiveStreams: SSE and WebSocket get items live, and after a reconnect everything still
// in the inbox that they had not seen, and nothing acked.
func TestLiveStreams(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{keepAlive: 100 * time.Millisecond})
	ch := g.channel(t)
	key := g.device(t, "")
	g.subscribe(t, key, ch)
	ev := g.mustOK(t, "/event/create", createBody(ch, nil))["event_id"].(string)

	// SSE: the item already there, then a live one.
	events, closeSSE := openSSE(t, g, key, "")
	first := next(t, events)
	if first.id != "1" || payload(first.data)["event_version"] != "1" {
		t.Fatalf("first SSE event %+v", first)
	}
	g.mustOK(t, "/event/update", opBody(ch, ev, obj{"event_time": 1713750000001}))
	live := next(t, events)
	if payload(live.data)["event_version"] != "2" {
		t.Fatalf("live SSE event %+v", live)
	}
	closeSSE()
	// Missed while disconnected; resume after the last id seen.
	g.mustOK(t, "/event/update", opBody(ch, ev, obj{"event_time": 1713750000002}))
	events, closeSSE = openSSE(t, g, key, live.id)
	if resumed := next(t, events); payload(resumed.data)["event_version"] != "3" {
		t.Fatalf("resumed SSE event %+v, want version 3", resumed)
	}
	closeSSE()

	// An idle stream sends keep-alive comments.
	kctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(kctx, http.MethodGet, g.url+"/device/stream?device_key="+key+"&last_event_id=999", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != ": keep-alive" {
		if strings.HasPrefix(sc.Text(), "data:") {
			t.Fatalf("an idle stream after the last item sent %q", sc.Text())
		}
	}
	if sc.Text() != ": keep-alive" {
		t.Fatalf("no keep-alive on an idle stream within 10s: %v", sc.Err())
	}
	_ = resp.Body.Close()

	// WebSocket: all three items, acks remove, a reconnect sends only the unacked ones.
	wsURL := "ws" + strings.TrimPrefix(g.url, "http") + "/device/ws?device_key=" + key
	read := func(c *websocket.Conn) map[string]any {
		t.Helper()
		_, data, err := c.Read(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var f map[string]any
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatal(err)
		}
		return f
	}
	c, _, err := websocket.Dial(t.Context(), wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	for range 3 {
		f := read(c)
		if f["type"] != "message" {
			t.Fatalf("frame %v", f)
		}
		got = append(got, f)
	}
	for _, f := range got[:2] {
		if err := c.Write(t.Context(), websocket.MessageText, mustJSON(t, obj{"type": "ack", "delivery_id": f["delivery_id"]})); err != nil {
			t.Fatal(err)
		}
		if r := read(c); r["type"] != "acked" || r["removed"] != true || r["delivery_id"] != f["delivery_id"] {
			t.Fatalf("ack reply %v", r)
		}
	}
	if err := c.Write(t.Context(), websocket.MessageText, []byte(`{"type":"nonsense"}`)); err != nil {
		t.Fatal(err)
	}
	if r := read(c); r["type"] != "error" || r["error_code"] != "invalid_frame" {
		t.Fatalf("reply to a bad frame %v", r)
	}
	g.mustOK(t, "/event/close", opBody(ch, ev, obj{"event_time": 1713750000003}))
	if f := read(c); f["type"] != "message" || payload(f)["event_state"] != "CLOSED" {
		t.Fatalf("live WebSocket frame %v", f)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")

	c, _, err = websocket.Dial(t.Context(), wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.CloseNow() }()
	var versions []string
	for range 2 {
		versions = append(versions, payload(read(c))["event_version"].(string))
	}
	if !reflect.DeepEqual(versions, []string{"3", "4"}) {
		t.Fatalf("after reconnect the WebSocket sent versions %v, want the unacked 3 and 4", versions)
	}
	if n := len(g.pull(t, key)); n != 2 {
		t.Fatalf("pull after acks: %d items, want 2", n)
	}
}

// hookReceiver is a webhook endpoint that verifies both signatures (X-Pushgo-Signature, and
// the Standard Webhooks one with that scheme's Go library) and can be made to fail.
type hookReceiver struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	secret string
	status int
	got    []map[string]any // bodies of verified requests answered 2xx
	ids    []string         // X-Pushgo-Delivery-Id of every request
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{t: t, status: http.StatusOK}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.ids = append(h.ids, r.Header.Get(webhook.HeaderDeliveryID))
		if err := webhook.Verify(h.secret, r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			t.Errorf("webhook signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		// As a receiver on the Standard Webhooks library verifies it, with the secret as issued.
		std, err := standardwebhooks.NewWebhook(h.secret)
		if err == nil {
			err = std.Verify(body, r.Header)
		}
		if err != nil || r.Header.Get(webhook.HeaderWebhookID) != r.Header.Get(webhook.HeaderDeliveryID) {
			t.Errorf("Standard Webhooks verification: %v (webhook-id %q)", err, r.Header.Get(webhook.HeaderWebhookID))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil || m["delivery_id"] != r.Header.Get(webhook.HeaderDeliveryID) {
			t.Errorf("webhook body %s", body)
		}
		if h.status < 300 {
			h.got = append(h.got, m)
		}
		w.WriteHeader(h.status)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookReceiver) set(status int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.status = status
}

func (h *hookReceiver) received() ([]map[string]any, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.got...), append([]string(nil), h.ids...)
}

// hook registers a server device with a webhook route to h and subscribes it to ch.
func (g *gateway) hook(t *testing.T, h *hookReceiver, ch string) string {
	t.Helper()
	key := g.device(t, "server")
	d := g.mustOK(t, "/channel/device", obj{"device_key": key, "channel_type": "webhook", "provider_token": h.srv.URL + "/hook"})
	secret, _ := d["webhook_secret"].(string)
	if !strings.HasPrefix(secret, "whsec_") || d["channel_type"] != "webhook" {
		t.Fatalf("webhook route = %v", d)
	}
	h.mu.Lock()
	h.secret = secret
	h.mu.Unlock()
	g.subscribe(t, key, ch)
	return key
}

// TestWebhookFailureIs503AndReplayRedrivesOnlyTheFailed: a failing webhook makes the op a 503
// with the outcome as data; once the receiver recovers, replaying the op_id delivers to it
// exactly once more while the device's inbox is not touched again.
func TestWebhookFailureIs503AndReplayRedrivesOnlyTheFailed(t *testing.T) {
	t.Parallel()
	// A replay while the webhook still fails retries it for the whole delivery budget (4/5 of
	// the wait) before answering: the wait leaves room for a busy machine under -race.
	g := startGateway(t, gatewayOpts{allowPrivate: true, dispatchWait: 4 * time.Second})
	ch := g.channel(t)
	phone := g.device(t, "")
	g.subscribe(t, phone, ch)
	recv := newHookReceiver(t)
	g.hook(t, recv, ch)

	// Healthy first: the signed push arrives with the data map.
	ok := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "hook-ok"}))
	got, _ := recv.received()
	if len(got) != 1 || got[0]["channel_id"] != ch || got[0]["data"].(map[string]any)["event_id"] != ok["event_id"] {
		t.Fatalf("webhook got %v", got)
	}

	recv.set(http.StatusInternalServerError)
	body := opBody(ch, ok["event_id"].(string), obj{"op_id": "hook-fail", "event_time": 1713750000001})
	r := g.post(t, "/event/update", body)
	if r.status != http.StatusServiceUnavailable || r.code() != "dispatch_partial_failure" {
		t.Fatalf("failing webhook: %d %s", r.status, r.raw)
	}
	d := r.data(t)
	if d["accepted"] != false || d["applied"] != true || d["version"] != 2.0 ||
		!reflect.DeepEqual(d["delivery"], map[string]any{"targets": 2.0, "delivered": 1.0, "failed": 1.0}) {
		t.Fatalf("503 data = %v", d)
	}
	_, ids := recv.received()
	failedAttempts := len(ids) - 1
	if failedAttempts < 2 {
		t.Fatalf("the failing webhook was tried %d times, want retries", failedAttempts)
	}
	// The state change is committed regardless.
	if st := g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ok["event_id"]}); st["version"] != 2.0 {
		t.Fatalf("state after 503: %v", st)
	}

	receipts := opReceipts(t, g, ch, "hook-fail")
	if len(receipts) != 2 || receipts["webhook"] != "FAILED webhook_status_500" || receipts["private"] != "DELIVERED " {
		t.Fatalf("receipts kept with the op: %v", receipts)
	}

	// Still failing: the replay says so again.
	if r := g.post(t, "/event/update", body); r.code() != "dispatch_partial_failure" {
		t.Fatalf("replay while still failing: %d %s", r.status, r.raw)
	}
	recv.set(http.StatusOK)
	r = g.post(t, "/event/update", body)
	if r.status != http.StatusOK || !reflect.DeepEqual(r.data(t)["delivery"], map[string]any{"targets": 2.0, "delivered": 2.0, "failed": 0.0}) {
		t.Fatalf("replay after recovery: %d %s", r.status, r.raw)
	}
	got, ids = recv.received()
	if len(got) != 2 || got[1]["data"].(map[string]any)["event_version"] != "2" {
		t.Fatalf("webhook deliveries after recovery: %d", len(got))
	}
	for _, id := range ids[1:] {
		if id != ids[1] {
			t.Fatalf("retries of one delivery changed its id: %v", ids)
		}
	}
	if n := len(g.pull(t, phone)); n != 2 {
		t.Fatalf("the phone's inbox has %d items, want 2 (no duplicate from the redrive)", n)
	}
	if receipts := opReceipts(t, g, ch, "hook-fail"); receipts["webhook"] != "DELIVERED " || receipts["private"] != "DELIVERED " {
		t.Fatalf("receipts after the redrive: %v", receipts)
	}
	// Settled: further replays answer the final outcome without delivering again.
	if r := g.post(t, "/event/update", body); r.status != http.StatusOK {
		t.Fatalf("replay after success: %d %s", r.status, r.raw)
	}
	if got, _ := recv.received(); len(got) != 2 {
		t.Fatalf("a settled replay delivered again: %d", len(got))
	}
}

// opReceipts reads the receipts kept with an op straight from the ops bucket, by route.
func opReceipts(t *testing.T, g *gateway, ch, opID string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range opRecord(t, g.jetStream(t), ch, opID).GetReceipts() {
		out[r.GetRoute()] = strings.TrimPrefix(r.GetStatus().String(), "RECEIPT_STATUS_") + " " + r.GetReason()
	}
	return out
}

// TestProviderRoutesFailUntilConfigured: APNs and FCM targets are validated and count as
// failed (provider_not_configured) until providers exist.
func TestProviderRoutesFailUntilConfigured(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	ch := g.channel(t)
	key := g.device(t, "ios")
	g.mustOK(t, "/channel/device", obj{"device_key": key, "channel_type": "apns", "provider_token": strings.Repeat("ab", 32)})
	g.subscribe(t, key, ch)
	r := g.post(t, "/event/create", createBody(ch, nil))
	if r.code() != "dispatch_partial_failure" || r.data(t)["delivery"].(map[string]any)["failed"] != 1.0 {
		t.Fatalf("apns target: %d %s", r.status, r.raw)
	}
}

// TestPrivateWebhooksRefusedByDefault: loopback and private URLs, literal or by name, are
// refused at registration unless --webhook-allow-private.
func TestPrivateWebhooksRefusedByDefault(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	key := g.device(t, "server")
	for url, code := range map[string]string{
		"http://127.0.0.1:8080/hook":     "webhook_url_not_allowed",
		"http://localhost:8080/hook":     "webhook_url_not_allowed",
		"http://10.1.2.3/hook":           "webhook_url_not_allowed",
		"http://169.254.169.254/latest":  "webhook_url_not_allowed",
		"http://[::1]/hook":              "webhook_url_not_allowed",
		"ftp://example.com/hook":         "invalid_webhook_url",
		"/relative":                      "invalid_webhook_url",
		"http://user:pw@93.184.216.34/x": "invalid_webhook_url",
		"http://no-such-host.invalid/x":  "invalid_webhook_url",
	} {
		r := g.post(t, "/channel/device", obj{"device_key": key, "channel_type": "webhook", "provider_token": url})
		if r.status != http.StatusBadRequest || r.code() != code {
			t.Errorf("%s: %d %s, want %s", url, r.status, r.raw, code)
		}
	}
}

// TestDeviceErrors covers the bad inputs of the device routes.
func TestDeviceErrors(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{allowPrivate: true})
	ch := g.channel(t)
	ios, android := g.device(t, "ios"), g.device(t, "android")
	unknown := strings.Repeat("0", 32)
	tests := []struct {
		name string
		path string
		body obj
		code string
	}{
		{"bad platform", "/device/register", obj{"platform": "symbian"}, "invalid_platform"},
		{"route: no key", "/channel/device", obj{"channel_type": "private"}, "device_key_required"},
		{"route: malformed key", "/channel/device", obj{"device_key": "xyz", "channel_type": "private"}, "invalid_device_key"},
		{"route: unknown key", "/channel/device", obj{"device_key": unknown, "channel_type": "private"}, "device_key_not_found"},
		{"route: bad type", "/channel/device", obj{"device_key": ios, "channel_type": "pigeon"}, "invalid_channel_type"},
		{"route: other platform", "/channel/device", obj{"device_key": ios, "channel_type": "private", "platform": "android"}, "platform_mismatch"},
		{"route: token on private", "/channel/device", obj{"device_key": ios, "channel_type": "private", "provider_token": "x"}, "provider_token_forbidden_for_private_channel"},
		{"route: webhook without URL", "/channel/device", obj{"device_key": ios, "channel_type": "webhook"}, "provider_token_required"},
		{"route: apns on android", "/channel/device", obj{"device_key": android, "channel_type": "apns", "provider_token": strings.Repeat("ab", 32)}, "apns_channel_requires_apple_platform"},
		{"route: fcm on ios", "/channel/device", obj{"device_key": ios, "channel_type": "fcm", "provider_token": strings.Repeat("t", 40)}, "fcm_channel_requires_android_platform"},
		{"route: bad apns token", "/channel/device", obj{"device_key": ios, "channel_type": "apns", "provider_token": "abc"}, "invalid_provider_token"},
		{"route: bad webhook URL", "/channel/device", obj{"device_key": ios, "channel_type": "webhook", "provider_token": "not a url"}, "invalid_webhook_url"},
		{"subscribe: both", "/channel/subscribe", obj{"device_key": ios, "channel_id": ch, "channel_name": "x", "password": "secret-123"}, "channel_binding_invalid"},
		{"subscribe: neither", "/channel/subscribe", obj{"device_key": ios, "password": "secret-123"}, "channel_binding_invalid"},
		{"subscribe: wrong password", "/channel/subscribe", obj{"device_key": ios, "channel_id": ch, "password": "wrong-pass"}, "password_mismatch"},
		{"subscribe: unknown device", "/channel/subscribe", obj{"device_key": unknown, "channel_id": ch, "password": "secret-123"}, "device_key_not_found"},
		{"subscribe: short password", "/channel/subscribe", obj{"device_key": ios, "channel_name": "n", "password": "short"}, "invalid_password"},
		{"unsubscribe: no channel", "/channel/unsubscribe", obj{"device_key": ios}, "channel_id_required"},
		{"pull: no key", "/messages/pull", obj{}, "device_key_required"},
		{"pull: bad limit", "/messages/pull", obj{"device_key": ios, "limit": 0}, "invalid_limit"},
		{"pull: unknown device", "/messages/pull", obj{"device_key": unknown}, "device_key_not_found"},
		{"ack: no delivery id", "/messages/ack", obj{"device_key": ios}, "delivery_id_required"},
		{"ack: bad delivery id", "/messages/ack", obj{"device_key": ios, "delivery_id": "x"}, "invalid_delivery_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if r := g.post(t, tt.path, tt.body); r.status != http.StatusBadRequest && r.code() != "password_mismatch" || r.code() != tt.code {
				t.Fatalf("got %d %s, want %s: %s", r.status, r.code(), tt.code, r.raw)
			}
		})
	}
	for _, path := range []string{"/device/stream", "/device/ws"} {
		if r := g.request(t, "GET", path+"?device_key="+unknown, "", nil, nil); r.code() != "device_key_not_found" {
			t.Fatalf("%s of an unknown device: %d %s", path, r.status, r.raw)
		}
		if r := g.request(t, "POST", path+"?device_key="+ios, "", nil, nil); r.code() != "method_not_allowed" {
			t.Fatalf("POST %s: %d %s", path, r.status, r.raw)
		}
	}
}

// TestRegister covers issuing, confirming and replacing device keys.
func TestRegister(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{})
	d := g.mustOK(t, "/device/register", obj{"platform": "iOS"})
	key := d["device_key"].(string)
	if d["issued_new_key"] != true || d["issue_reason"] != "device_key_missing" || d["platform"] != "ios" || d["channel_type"] != "private" {
		t.Fatalf("new device = %v", d)
	}
	if d := g.mustOK(t, "/device/register", obj{"platform": "ios", "device_key": key}); d["device_key"] != key || d["issued_new_key"] != false || d["issue_reason"] != nil {
		t.Fatalf("known device = %v", d)
	}
	if d := g.mustOK(t, "/device/register", obj{"platform": "ios", "device_key": strings.Repeat("1", 32)}); d["issue_reason"] != "device_key_not_found" {
		t.Fatalf("unknown key = %v", d)
	}
	moved := g.mustOK(t, "/device/register", obj{"platform": "android", "device_key": key})
	if moved["device_key"] == key || moved["issue_reason"] != "platform_mismatch" {
		t.Fatalf("platform switch = %v", moved)
	}
	if again := g.mustOK(t, "/device/register", obj{"platform": "android", "device_key": key}); again["device_key"] != moved["device_key"] {
		t.Fatalf("the stale key led to %v, want the replacement %v", again["device_key"], moved["device_key"])
	}
	ch := g.channel(t)
	if r := g.post(t, "/channel/subscribe", obj{"device_key": key, "channel_id": ch, "password": "secret-123"}); r.code() != "device_key_not_found" {
		t.Fatalf("the revoked key subscribed: %d %s", r.status, r.raw)
	}
	// Subscribing by name creates a channel the device can then receive on.
	s := g.mustOK(t, "/channel/subscribe", obj{"device_key": moved["device_key"], "channel_name": "new one", "password": "secret-123"})
	if s["created"] != true || s["subscribed"] != true || s["channel_name"] != "new one" {
		t.Fatalf("subscribe by name = %v", s)
	}
	g.mustOK(t, "/event/create", createBody(s["channel_id"].(string), nil))
	if n := len(g.pull(t, moved["device_key"].(string))); n != 1 {
		t.Fatalf("%d items on the new channel", n)
	}
}
