package main

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"pushgo.dev/gateway/proto/logctx"
	"pushgo.dev/gateway/proto/tracing"
)

// TestOneTraceAcrossTheServices: with tracing on (an in-memory exporter here, OTLP from the
// OTEL_* variables in a deployment), one op is one trace: the HTTP request and the op in
// ingest, the fold in lifecycle, the delivery and each target in dispatch, joined through the
// traceparent header on the command and on the domain event.
func TestOneTraceAcrossTheServices(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tracing.Enable(tp)
	t.Cleanup(func() { tracing.Enable(nil); _ = tp.Shutdown(t.Context()) })

	g := startGateway(t, gatewayOpts{allowPrivate: true})
	ch := g.channel(t)
	phone := g.device(t, "")
	g.subscribe(t, phone, ch)
	g.hook(t, newHookReceiver(t), ch)
	g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "traced-1"}))

	want := []struct{ name, scope string }{
		{"POST /event/create", "pushgo/ingest"},
		{"op create", "pushgo/ingest"},
		{"fold create", "pushgo/lifecycle"},
		{"deliver create", "pushgo/dispatch"},
		{"deliver to private", "pushgo/dispatch"},
		{"deliver to webhook", "pushgo/dispatch"},
	}
	var byName map[string]sdktrace.ReadOnlySpan
	eventually(t, 10*time.Second, "the op's spans", func() bool {
		byName = map[string]sdktrace.ReadOnlySpan{}
		var op sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			for _, a := range s.Attributes() {
				if a.Key == "pushgo.op_id" && a.Value.AsString() == "traced-1" && s.Name() == "op create" {
					op = s
				}
			}
		}
		if op == nil {
			return false
		}
		for _, s := range rec.Ended() {
			if s.SpanContext().TraceID() == op.SpanContext().TraceID() {
				byName[s.Name()] = s
			}
		}
		return len(byName) >= len(want)
	})
	for _, w := range want {
		s, ok := byName[w.name]
		if !ok || s.InstrumentationScope().Name != w.scope {
			t.Fatalf("span %q of %s missing from the op's trace; it has %v", w.name, w.scope, names(byName))
		}
	}
	parent := func(child, of string) {
		if byName[child].Parent().SpanID() != byName[of].SpanContext().SpanID() {
			t.Errorf("%q is not a child of %q", child, of)
		}
	}
	parent("op create", "POST /event/create")
	parent("fold create", "op create")      // across NATS: the command's traceparent
	parent("deliver create", "fold create") // across NATS: the domain event's traceparent
	parent("deliver to webhook", "deliver create")
	if !hasAttr(byName["POST /event/create"], "http.response.status_code", "200") {
		t.Errorf("HTTP span attributes: %v", byName["POST /event/create"].Attributes())
	}
}

func names(m map[string]sdktrace.ReadOnlySpan) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	return out
}

func hasAttr(s sdktrace.ReadOnlySpan, key, value string) bool {
	for _, a := range s.Attributes() {
		if string(a.Key) == key && a.Value.String() == value {
			return true
		}
	}
	return false
}

// logLines parses the JSON lines of a log.
func logLines(log string) []map[string]any {
	var out []map[string]any
	for line := range strings.SplitSeq(log, "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

// TestLogsNameTheOpAndNoSecret: a line about an op, in any service, names its request_id,
// channel_id, event_id and op_id; no line holds a credential (the channel password, the token,
// a webhook secret, a device key).
func TestLogsNameTheOpAndNoSecret(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	log := slog.New(logctx.NewHandler(slog.NewJSONHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
	g := startGateway(t, gatewayOpts{allowPrivate: true, logger: log, token: "tok-very-secret"})
	auth := map[string]string{"Authorization": "Bearer tok-very-secret"}
	post := func(path string, body obj) map[string]any {
		t.Helper()
		r := g.request(t, http.MethodPost, path, "application/json", mustJSON(t, body), auth)
		if r.status != http.StatusOK {
			t.Fatalf("POST %s: %d %s", path, r.status, r.raw)
		}
		return r.data(t)
	}
	ch := post("/channel/create", obj{"channel_name": "logs", "password": "secret-123"})["channel_id"].(string)
	key := post("/device/register", obj{"platform": "server"})["device_key"].(string)
	gone := httpServer(t, http.StatusGone)
	secret := post("/channel/device", obj{"device_key": key, "channel_type": "webhook", "provider_token": gone})["webhook_secret"].(string)
	post("/channel/subscribe", obj{"device_key": key, "channel_id": ch, "password": "secret-123"})
	// The webhook answers 410: dispatch logs that it disables the endpoint, a line about the op.
	r := g.request(t, http.MethodPost, "/event/create", "application/json", mustJSON(t, createBody(ch, obj{"op_id": "logged-1"})), auth)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("create to a gone webhook: %d %s", r.status, r.raw)
	}
	reqID := r.header.Get("X-Request-Id")
	eventID, _ := r.data(t)["event_id"].(string)
	var about map[string]any
	eventually(t, 10*time.Second, "dispatch's line about the op", func() bool {
		for _, l := range logLines(out.String()) {
			if l["service"] == "dispatch" && strings.Contains(l["msg"].(string), "refused for good") {
				about = l
				return true
			}
		}
		return false
	})
	if about["request_id"] != reqID || about["channel_id"] != ch || about["event_id"] != eventID || about["op_id"] != "logged-1" {
		t.Fatalf("dispatch's line about the op: %v (request %s)", about, reqID)
	}
	if about["device"] != logctx.Device(key) {
		t.Fatalf("the device is named %v, want its digest", about["device"])
	}
	all := out.String()
	for what, s := range map[string]string{"password": "secret-123", "token": "tok-very-secret", "webhook secret": secret,
		"webhook secret key": strings.TrimPrefix(secret, "whsec_"), "device key": key} {
		if strings.Contains(all, s) {
			t.Errorf("the logs hold the %s", what)
		}
	}
}

// httpServer answers every request with status.
func httpServer(t *testing.T, status int) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	t.Cleanup(srv.Close)
	return srv.URL + "/hook"
}
