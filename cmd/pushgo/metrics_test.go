package main

import (
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetrics scrapes GET /metrics after ops, a webhook delivery, an error and a rate-limit
// refusal, and reads it with the Prometheus text parser: every family of DESIGN.md §11 is
// there with the labels of what was done. The registry is the process's, shared with the
// tests running beside this one, so values are checked to be at least what this test did.
func TestMetrics(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{allowPrivate: true, channelOpsPerSecond: 1, webhookRetrySchedule: "1h"})
	ch := g.channel(t)
	recv := newHookReceiver(t)
	g.hook(t, recv, ch)
	ev := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "m-1"}))["event_id"].(string)
	if r := g.post(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": "nope"}); r.code() != "event_not_found" {
		t.Fatalf("get of an unknown event: %d %s", r.status, r.raw)
	}
	eventually(t, 10*time.Second, "a rate-limit refusal", func() bool {
		return g.post(t, "/event/update", opBody(ch, ev, obj{"event_time": time.Now().UnixMilli()})).code() == "rate_limited"
	})

	phone := g.device(t, "")
	_, closeStream := openSSE(t, g, phone, "")
	defer closeStream()
	families := scrape(t, g.url+"/metrics", "")
	// value returns the value of the family's sample with these labels (a histogram's count);
	// -1 when there is none.
	value := func(name string, labels map[string]string) float64 {
		f := families[name]
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount())
			default: // summaries and untyped: none of ours
				return -1
			}
		}
		return -1
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
	}{
		{"pushgo_http_request_duration_seconds", map[string]string{"route": "/event/create", "code": "200"}, 1},
		{"pushgo_http_request_duration_seconds", map[string]string{"route": "/event/get", "code": "404"}, 1},
		{"pushgo_ops_total", map[string]string{"route": "create", "outcome": "ok"}, 1},
		{"pushgo_ops_total", map[string]string{"route": "update", "outcome": "rate_limited"}, 1},
		{"pushgo_api_errors_total", map[string]string{"code": "event_not_found"}, 1},
		{"pushgo_rate_limit_refusals_total", map[string]string{"code": "rate_limited"}, 1},
		{"pushgo_deliveries_total", map[string]string{"route": "webhook", "result": "delivered"}, 1},
		{"pushgo_provider_request_duration_seconds", map[string]string{"provider": "webhook", "result": "ok"}, 1},
		{"pushgo_consumer_pending_messages", map[string]string{"stream": "PUSHGO_COMMANDS", "consumer": "lifecycle"}, 0},
		{"pushgo_consumer_ack_pending_messages", map[string]string{"stream": "PUSHGO_EVENTS", "consumer": "dispatch"}, 0},
		{"pushgo_consumer_pending_messages", map[string]string{"stream": "PUSHGO_RETRIES", "consumer": "dispatch-retries"}, 0},
		{"pushgo_stream_messages", map[string]string{"stream": "PUSHGO_INBOX"}, 0},
		{"pushgo_integrity_failures_total", nil, 0},
		{"pushgo_live_streams", map[string]string{"kind": "sse"}, 1},
		{"go_goroutines", nil, 1},
	} { // partition 0's streams keep the unpartitioned names (bus.Layout)
		if v := value(c.name, c.labels); v < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, v, c.min)
		}
	}
	for name, typ := range map[string]dto.MetricType{"pushgo_http_request_duration_seconds": dto.MetricType_HISTOGRAM,
		"pushgo_ops_total": dto.MetricType_COUNTER, "pushgo_stream_messages": dto.MetricType_GAUGE} {
		if got := families[name].GetType(); got != typ {
			t.Errorf("%s is a %s, want %s", name, got, typ)
		}
	}
}

// scrape reads a /metrics answer with the Prometheus text parser.
func scrape(t *testing.T, url, token string) map[string]*dto.MetricFamily {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	return families
}

// TestMetricsBehindTheToken: with a gateway token, /metrics on the API listener takes it.
func TestMetricsBehindTheToken(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{token: "tok"})
	if r := g.request(t, "GET", "/metrics", "", nil, nil); r.status != http.StatusUnauthorized || r.code() != "authentication_failed" {
		t.Fatalf("/metrics without the token: %d %s", r.status, r.raw)
	}
	if f := scrape(t, g.url+"/metrics", "tok"); f["pushgo_integrity_failures_total"] == nil {
		t.Fatal("no pushgo families with the token")
	}
}

// TestMetricsAddr: with --metrics-addr the metrics leave the API listener for their own, which
// takes no token.
func TestMetricsAddr(t *testing.T) {
	t.Parallel()
	addr, maddr := freeAddr(t), freeAddr(t)
	p := start(t, "serve", "--data-dir", t.TempDir(), "--http-addr", addr, "--grpc-addr", "", "--metrics-addr", maddr, "--token", "tok")
	g := &gateway{url: "http://" + addr}
	g.waitReady(t)
	auth := map[string]string{"Authorization": "Bearer tok"}
	if r := g.request(t, "GET", "/metrics", "", nil, auth); r.code() != "route_not_found" {
		t.Fatalf("/metrics on the API listener with --metrics-addr: %d %s", r.status, r.raw)
	}
	// Without a token, and with lifecycle's and dispatch's families once they run.
	eventually(t, 15*time.Second, "the consumers' families on --metrics-addr", func() bool {
		f := scrape(t, "http://"+maddr+"/metrics", "")
		return f["pushgo_consumer_pending_messages"] != nil && len(f["pushgo_consumer_pending_messages"].GetMetric()) >= 3
	})
	p.stop(t)
}

// TestHostedMetricsTakeTheAdminToken: in hosted mode /metrics is the operator's: a tenant's
// API key does not open it, the admin token does; /openapi.json stays open.
func TestHostedMetricsTakeTheAdminToken(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{adminToken: adminToken})
	_, key := g.newTenant(t, "acme", nil)
	for _, cred := range []string{"", key} {
		h := map[string]string{}
		if cred != "" {
			h["Authorization"] = "Bearer " + cred
		}
		if r := g.request(t, http.MethodGet, "/metrics", "", nil, h); r.status != http.StatusUnauthorized || r.code() != "authentication_failed" {
			t.Fatalf("/metrics with %q: %d %s", cred, r.status, r.raw)
		}
	}
	if f := scrape(t, g.url+"/metrics", adminToken); f["pushgo_ops_total"] == nil && f["go_goroutines"] == nil {
		t.Fatal("no metrics with the admin token")
	}
	if resp, err := http.Get(g.url + "/openapi.json"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/openapi.json in hosted mode: %v", err)
	} else {
		_ = resp.Body.Close()
	}
}
