package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestTenantOwnLimits: in hosted mode a tenant's own limits (DESIGN.md §8.1 `limits`) reach the
// op limiter, the subscriber quota and the stream limiter, and hold for that tenant only.
func TestTenantOwnLimits(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{adminToken: adminToken})
	_, small := g.newTenant(t, "small", obj{"ops_per_second": 1, "subscribers_per_channel": 1, "streams": 1})
	_, big := g.newTenant(t, "big", nil)

	// Ops: a bucket of 1/s with a burst of 2 admits two creates at once, then refuses.
	ch := g.tenantChannel(t, small)
	codes := map[string]int{}
	for range 5 {
		codes[g.as(t, small, "/event/create", createBody(ch, nil)).code()]++
	}
	if codes[""] < 2 || codes[""] > 3 || codes["rate_limited"] == 0 {
		t.Fatalf("5 creates at 1 op/s: %v", codes)
	}
	bigCh := g.tenantChannel(t, big)
	for i := range 5 {
		if r := g.as(t, big, "/event/create", createBody(bigCh, nil)); r.status != http.StatusOK {
			t.Fatalf("the other tenant's create %d: %s", i, r.raw)
		}
	}

	// Subscribers: one per channel.
	d1, d2 := g.tenantDevice(t, small), g.tenantDevice(t, small)
	g.okAs(t, small, "/channel/subscribe", obj{"device_key": d1, "channel_id": ch, "password": "secret-123"})
	if r := g.as(t, small, "/channel/subscribe", obj{"device_key": d2, "channel_id": ch, "password": "secret-123"}); r.code() != "quota_exceeded" {
		t.Fatalf("second subscriber of a tenant allowed one: %s", r.raw)
	}

	// Streams: one for all the tenant's devices (the device-keyed route learns the tenant from
	// the device).
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	s := openStream(ctx, t, client, g, d1)
	defer func() { _ = s.resp.Body.Close() }()
	r := g.request(t, http.MethodGet, "/device/stream?device_key="+d2, "", nil, nil)
	if r.status != http.StatusTooManyRequests || r.code() != "too_many_streams" || !strings.Contains(*r.env.Error, "tenant") {
		t.Fatalf("second stream of a tenant allowed one: %d %s", r.status, r.raw)
	}
	other := g.tenantDevice(t, big)
	s2 := openStream(ctx, t, client, g, other)
	_ = s2.resp.Body.Close()
}
