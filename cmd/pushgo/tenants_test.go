package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"pushgo.dev/gateway/proto/bus/bustest"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/dispatch"
	"pushgo.dev/gateway/services/ingest"
)

// The end-to-end tests of hosted mode (DESIGN.md §8.1): tenants made over the admin routes, API
// keys on every other route, isolation, quotas and usage.

const adminToken = "admin-token-for-tests"

// as sends a JSON POST with "Authorization: Bearer <credential>" ("" sends none).
func (g *gateway) as(t testing.TB, credential, path string, body any) response {
	t.Helper()
	var h map[string]string
	if credential != "" {
		h = map[string]string{"Authorization": "Bearer " + credential}
	}
	return g.request(t, http.MethodPost, path, "application/json", mustJSON(t, body), h)
}

// okAs is as, failing the test unless the answer is 200.
func (g *gateway) okAs(t testing.TB, credential, path string, body any) map[string]any {
	t.Helper()
	r := g.as(t, credential, path, body)
	if r.status != http.StatusOK {
		t.Fatalf("POST %s: %d %s", path, r.status, r.raw)
	}
	return r.data(t)
}

// newTenant creates a tenant and returns its id and API key.
func (g *gateway) newTenant(t testing.TB, name string, limits obj) (string, string) {
	t.Helper()
	body := obj{"name": name}
	if limits != nil {
		body["limits"] = limits
	}
	d := g.okAs(t, adminToken, "/admin/tenant/create", body)
	return d["tenant_id"].(string), d["api_key"].(string)
}

// tenantChannel creates a channel with a tenant's key (password "secret-123").
func (g *gateway) tenantChannel(t testing.TB, key string) string {
	t.Helper()
	return g.okAs(t, key, "/channel/create", obj{"channel_name": "c", "password": "secret-123"})["channel_id"].(string)
}

func (g *gateway) tenantDevice(t testing.TB, key string) string {
	t.Helper()
	return g.okAs(t, key, "/device/register", obj{"platform": "web"})["device_key"].(string)
}

func TestHostedModeAuthentication(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{adminToken: adminToken})

	// Admin routes take the admin token, nothing else.
	for _, cred := range []string{"", "wrong", "Bearer"} {
		if r := g.as(t, cred, "/admin/tenant/list", obj{}); r.status != http.StatusUnauthorized || r.code() != "authentication_failed" {
			t.Fatalf("admin list with %q: %d %s", cred, r.status, r.raw)
		}
	}
	id, key := g.newTenant(t, "acme", nil)
	created := g.okAs(t, adminToken, "/admin/tenant/list", obj{})["tenants"].([]any)[0].(map[string]any)
	if created["tenant_id"] != id || created["name"] != "acme" || created["api_key"] != nil {
		t.Fatalf("list shows %v", created)
	}
	if r := g.as(t, key, "/admin/tenant/list", obj{}); r.code() != "authentication_failed" {
		t.Fatalf("a tenant's key on an admin route: %s", r.raw)
	}
	if !strings.HasPrefix(key, "pgk_"+id+"_") {
		t.Fatalf("api key %q", key)
	}

	// Every other route takes a tenant's key, and checks it before the body.
	if r := g.as(t, "", "/channel/create", obj{"channel_name": "c", "password": "secret-123"}); r.code() != "authentication_failed" {
		t.Fatalf("no key: %s", r.raw)
	}
	if r := g.request(t, http.MethodPost, "/event/create", "text/plain", []byte("{"), nil); r.code() != "authentication_failed" {
		t.Fatalf("no key, bad body: %s", r.raw)
	}
	wrong := key[:len(key)-2] + "00"
	if wrong == key {
		wrong = key[:len(key)-2] + "11"
	}
	for _, cred := range []string{wrong, adminToken, "pgk_nonsense"} {
		if r := g.as(t, cred, "/channel/create", obj{"channel_name": "c", "password": "secret-123"}); r.status != http.StatusUnauthorized || r.code() != "authentication_failed" {
			t.Fatalf("credential %q: %d %s", cred, r.status, r.raw)
		}
	}
	ch := g.tenantChannel(t, key)
	dev := g.tenantDevice(t, key)
	g.okAs(t, key, "/channel/subscribe", obj{"device_key": dev, "channel_id": ch, "password": "secret-123"})
	res := g.okAs(t, key, "/event/create", createBody(ch, nil))
	if res["version"].(float64) != 1 {
		t.Fatalf("create: %v", res)
	}
	// Device-keyed routes and health checks take no key.
	if items := g.pull(t, dev); len(items) != 1 {
		t.Fatalf("pull without a key: %v", items)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := g.request(t, http.MethodGet, p, "", nil, nil); r.status != http.StatusOK {
			t.Fatalf("%s: %s", p, r.raw)
		}
	}
	// The key in a 401 is never echoed.
	if r := g.as(t, wrong, "/channel/create", obj{}); strings.Contains(r.raw, wrong) {
		t.Fatalf("401 echoes the key: %s", r.raw)
	}
}

// TestTenantIsolation: another tenant's channel or device is answered exactly as an unknown
// one, byte for byte (no existence oracle), and no route crosses tenants.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{adminToken: adminToken})
	aID, a := g.newTenant(t, "a", nil)
	_, b := g.newTenant(t, "b", nil)
	chA, devA := g.tenantChannel(t, a), g.tenantDevice(t, a)
	chB, devB := g.tenantChannel(t, b), g.tenantDevice(t, b)
	g.okAs(t, a, "/channel/subscribe", obj{"device_key": devA, "channel_id": chA, "password": "secret-123"})
	// Dispatch learns of the subscription from a KV watcher a moment after it is acknowledged;
	// under load an op can overtake it (it then has no target and pushes nothing), so create
	// until one reaches the device.
	var ev string
	eventually(t, 10*time.Second, "a create that reaches A's device", func() bool {
		d := g.okAs(t, a, "/event/create", createBody(chA, nil))
		ev = d["event_id"].(string)
		return d["delivery"].(map[string]any)["targets"].(float64) == 1
	})
	const unknownCh = "00000000000000000000000000"
	const unknownDev = "0123456789abcdef0123456789abcdef"

	// sameAs checks that B's answer about A's object is the answer about an unknown one, with
	// the id (which the message names) put in place.
	sameAs := func(what string, got, unknown response, id, unknownID string) {
		t.Helper()
		want := strings.ReplaceAll(unknown.raw, unknownID, id)
		if got.status != unknown.status || got.raw != want {
			t.Fatalf("%s: %d %s\nunknown: %d %s", what, got.status, got.raw, unknown.status, want)
		}
	}
	channelRoutes := map[string]func(ch, pw string) obj{
		"/event/create":  func(ch, pw string) obj { return createBody(ch, obj{"password": pw}) },
		"/event/update":  func(ch, pw string) obj { return opBody(ch, ev, obj{"password": pw}) },
		"/event/close":   func(ch, pw string) obj { return opBody(ch, ev, obj{"password": pw}) },
		"/event/get":     func(ch, pw string) obj { return obj{"channel_id": ch, "password": pw, "event_id": ev} },
		"/event/history": func(ch, pw string) obj { return obj{"channel_id": ch, "password": pw, "event_id": ev} },
		"/event/list":    func(ch, pw string) obj { return obj{"channel_id": ch, "password": pw} },
		"/channel/subscribe": func(ch, pw string) obj {
			return obj{"device_key": devB, "channel_id": ch, "password": pw}
		},
	}
	for path, body := range channelRoutes {
		for _, pw := range []string{"secret-123", "wrong-password"} { // not even a password oracle
			got := g.as(t, b, path, body(chA, pw))
			if got.code() != "channel_not_found" {
				t.Fatalf("B %s on A's channel (password %s): %s", path, pw, got.raw)
			}
			sameAs("B "+path+" on A's channel", got, g.as(t, b, path, body(unknownCh, pw)), chA, unknownCh)
		}
	}
	deviceRoutes := map[string]func(dev string) obj{
		"/channel/device":      func(dev string) obj { return obj{"device_key": dev, "channel_type": "private"} },
		"/channel/subscribe":   func(dev string) obj { return obj{"device_key": dev, "channel_id": chB, "password": "secret-123"} },
		"/channel/unsubscribe": func(dev string) obj { return obj{"device_key": dev, "channel_id": chA} },
		// A's webhook attempts are A's: another tenant's key meets an unknown device.
		"/channel/device/attempts": func(dev string) obj { return obj{"device_key": dev} },
	}
	for path, body := range deviceRoutes {
		got := g.as(t, b, path, body(devA))
		if got.code() != "device_key_not_found" {
			t.Fatalf("B %s with A's device: %s", path, got.raw)
		}
		sameAs("B "+path+" with A's device", got, g.as(t, b, path, body(unknownDev)), devA, unknownDev)
	}
	// Registering with A's key from B issues B a new key, as for an unknown key.
	reg := g.okAs(t, b, "/device/register", obj{"platform": "web", "device_key": devA})
	if reg["device_key"] == devA || reg["issue_reason"] != "device_key_not_found" {
		t.Fatalf("B re-registering A's device: %v", reg)
	}
	// Nothing B did reached A: A's device still has exactly its one push, and A's channel its
	// one subscriber.
	if items := g.pull(t, devA); len(items) != 1 {
		t.Fatalf("A's inbox: %v", items)
	}
	if d := g.okAs(t, a, "/event/update", opBody(chA, ev, nil)); d["delivery"].(map[string]any)["targets"].(float64) != 1 {
		t.Fatalf("A's channel has other subscribers: %v", d)
	}

	// Deleting A: its key fails at once, its device answers as unknown on the device-keyed
	// routes, and its channels stay unknown to B.
	g.okAs(t, adminToken, "/admin/tenant/delete", obj{"tenant_id": aID})
	if r := g.as(t, a, "/event/get", obj{"channel_id": chA, "password": "secret-123", "event_id": ev}); r.status != http.StatusUnauthorized {
		t.Fatalf("deleted tenant's key: %s", r.raw)
	}
	for _, path := range []string{"/messages/pull", "/messages/ack"} {
		body := func(dev string) obj { return obj{"device_key": dev, "delivery_id": unknownDev} }
		if path == "/messages/pull" {
			body = func(dev string) obj { return obj{"device_key": dev} }
		}
		got := g.as(t, "", path, body(devA))
		if got.code() != "device_key_not_found" {
			t.Fatalf("%s of a deleted tenant's device: %s", path, got.raw)
		}
		sameAs(path+" of a deleted tenant's device", got, g.as(t, "", path, body(unknownDev)), devA, unknownDev)
	}
	resp, err := http.Get(g.url + "/device/stream?device_key=" + devA)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(raw), "device_key_not_found") {
		t.Fatalf("stream of a deleted tenant's device: %d %s", resp.StatusCode, raw)
	}
	got := g.as(t, b, "/event/get", obj{"channel_id": chA, "password": "secret-123", "event_id": ev})
	sameAs("B on a deleted tenant's channel", got, g.as(t, b, "/event/get", obj{"channel_id": unknownCh, "password": "secret-123", "event_id": ev}), chA, unknownCh)
	if r := g.as(t, adminToken, "/admin/tenant/usage", obj{"tenant_id": aID}); r.code() != "tenant_not_found" {
		t.Fatalf("usage of a deleted tenant: %s", r.raw)
	}
	// B is untouched.
	g.okAs(t, b, "/channel/subscribe", obj{"device_key": devB, "channel_id": chB, "password": "secret-123"})
}

func TestTenantQuotas(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{adminToken: adminToken, channelsPerTenant: 2, devicesPerTenant: 2})
	id, key := g.newTenant(t, "flag limits", nil)
	_, big := g.newTenant(t, "own limits", obj{"channels": 3, "devices": 0})
	dev := g.tenantDevice(t, key)
	g.tenantDevice(t, key)
	if r := g.as(t, key, "/device/register", obj{"platform": "web"}); r.status != http.StatusForbidden || r.code() != "quota_exceeded" {
		t.Fatalf("third device: %d %s", r.status, r.raw)
	}
	// A re-registration on another platform replaces the device: no new quota.
	if d := g.okAs(t, key, "/device/register", obj{"platform": "ios", "device_key": dev}); d["issue_reason"] != "platform_mismatch" {
		t.Fatalf("re-registration: %v", d)
	}
	g.tenantChannel(t, key)
	g.tenantChannel(t, key)
	if r := g.as(t, key, "/channel/create", obj{"channel_name": "c", "password": "secret-123"}); r.status != http.StatusForbidden || r.code() != "quota_exceeded" {
		t.Fatalf("third channel: %d %s", r.status, r.raw)
	}
	// Subscribe by name creates a channel: the same quota.
	current := g.okAs(t, key, "/device/register", obj{"platform": "ios", "device_key": dev})["device_key"].(string)
	if r := g.as(t, key, "/channel/subscribe", obj{"device_key": current, "channel_name": "new", "password": "secret-123"}); r.code() != "quota_exceeded" {
		t.Fatalf("subscribe creating a third channel: %s", r.raw)
	}
	u := g.okAs(t, adminToken, "/admin/tenant/usage", obj{"tenant_id": id})
	if u["channels"].(float64) != 2 || u["devices"].(float64) != 2 {
		t.Fatalf("usage after refusals: %v", u)
	}

	// Per-tenant overrides: 3 channels, devices unlimited.
	for range 3 {
		g.tenantChannel(t, big)
	}
	if r := g.as(t, big, "/channel/create", obj{"channel_name": "c", "password": "secret-123"}); r.code() != "quota_exceeded" {
		t.Fatalf("fourth channel of own limits: %s", r.raw)
	}
	for range 3 {
		g.tenantDevice(t, big)
	}
	// Raising a tenant's limit takes effect at once; 0 turns it off.
	upd := g.okAs(t, adminToken, "/admin/tenant/update", obj{"tenant_id": id, "limits": obj{"channels": 0}})
	lim, eff := upd["limits"].(map[string]any), upd["effective_limits"].(map[string]any)
	if lim["channels"].(float64) != 0 || lim["devices"] != nil || eff["devices"].(float64) != 2 || eff["channels"].(float64) != 0 {
		t.Fatalf("update answer: %v", upd)
	}
	g.tenantChannel(t, key)
}

// TestTenantUsage: today's ops are counted by ingest, deliveries by dispatch (each flushed
// every few seconds), channels and devices are current.
func TestTenantUsage(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{adminToken: adminToken})
	id, key := g.newTenant(t, "acme", nil)
	_, other := g.newTenant(t, "other", nil)
	ch := g.tenantChannel(t, key)
	d1, d2 := g.tenantDevice(t, key), g.tenantDevice(t, key)
	for _, d := range []string{d1, d2} {
		g.okAs(t, key, "/channel/subscribe", obj{"device_key": d, "channel_id": ch, "password": "secret-123"})
	}
	// Deliveries are what the answers report delivered (6 unless an op overtook dispatch's view
	// of the subscriptions, which it learns from a KV watcher).
	delivered := 0.0
	op := func(path string, body obj) string {
		d := g.okAs(t, key, path, body)
		delivered += d["delivery"].(map[string]any)["delivered"].(float64)
		return d["event_id"].(string)
	}
	ev := op("/event/create", createBody(ch, nil))
	op("/event/update", opBody(ch, ev, nil))
	op("/event/close", opBody(ch, ev, nil))
	if delivered == 0 {
		t.Fatal("no op reached the devices")
	}
	// Not ops: a read, a refused op; and another tenant's op.
	g.okAs(t, key, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
	if r := g.as(t, key, "/event/create", createBody(ch, obj{"password": "wrong-password"})); r.code() != "password_mismatch" {
		t.Fatalf("wrong password: %s", r.raw)
	}
	och := g.tenantChannel(t, other)
	g.okAs(t, other, "/event/create", createBody(och, nil))

	var u map[string]any
	eventually(t, 15*time.Second, "usage flushed", func() bool {
		u = g.okAs(t, adminToken, "/admin/tenant/usage", obj{"tenant_id": id})
		return u["ops"].(float64) == 3 && u["deliveries"].(float64) == delivered
	})
	if u["channels"].(float64) != 1 || u["devices"].(float64) != 2 || u["streams"].(float64) != 0 ||
		u["day"] != time.Now().UTC().Format("2006-01-02") || u["tenant_id"] != id {
		t.Fatalf("usage %v", u)
	}
}

func TestTenantAdminErrors(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{adminToken: adminToken})
	tests := []struct {
		path string
		body obj
		code string
	}{
		{"/admin/tenant/create", obj{}, "tenant_name_required"},
		{"/admin/tenant/create", obj{"name": "  "}, "tenant_name_required"},
		{"/admin/tenant/create", obj{"name": strings.Repeat("n", 129)}, "invalid_tenant_name"},
		{"/admin/tenant/create", obj{"name": "a\x00b"}, "invalid_tenant_name"},
		{"/admin/tenant/create", obj{"name": "n", "limits": obj{"channels": -1}}, "invalid_json_data"},
		{"/admin/tenant/create", obj{"name": "n", "limits": obj{"channel": 1}}, "unknown_field"},
		{"/admin/tenant/update", obj{"name": "n"}, "tenant_id_required"},
		{"/admin/tenant/update", obj{"tenant_id": "ABC"}, "invalid_tenant_id"},
		{"/admin/tenant/update", obj{"tenant_id": strings.Repeat("a", 32)}, "tenant_not_found"},
		{"/admin/tenant/delete", obj{"tenant_id": strings.Repeat("a", 32)}, "tenant_not_found"},
		{"/admin/tenant/delete", obj{}, "tenant_id_required"},
		{"/admin/tenant/usage", obj{"tenant_id": "x"}, "invalid_tenant_id"},
		{"/admin/tenant/usage", obj{"tenant_id": strings.Repeat("b", 32)}, "tenant_not_found"},
		{"/admin/tenant/nope", obj{}, "route_not_found"},
	}
	for _, tt := range tests {
		if r := g.as(t, adminToken, tt.path, tt.body); r.code() != tt.code {
			t.Errorf("%s %v: %s, want %s", tt.path, tt.body, r.raw, tt.code)
		}
	}
	id, _ := g.newTenant(t, "n", nil)
	if r := g.as(t, adminToken, "/admin/tenant/update", obj{"tenant_id": id, "name": ""}); r.code() != "tenant_name_required" {
		t.Errorf("rename to blank: %s", r.raw)
	}
}

// TestAdminRoutesOnlyInHostedMode: public and private gateways have no admin routes, and a
// hosted gateway refuses to start with a gateway token too.
func TestAdminRoutesOnlyInHostedMode(t *testing.T) {
	t.Parallel()
	for _, tok := range []string{"", "gateway-token"} {
		g := startGateway(t, gatewayOpts{token: tok})
		for _, cred := range []string{tok, adminToken} {
			r := g.as(t, cred, "/admin/tenant/create", obj{"name": "x"})
			if tok != "" && cred != tok {
				if r.code() != "authentication_failed" {
					t.Fatalf("private mode, wrong token: %s", r.raw)
				}
				continue
			}
			if r.status != http.StatusNotFound || r.code() != "route_not_found" {
				t.Fatalf("token %q: admin route answered %d %s", tok, r.status, r.raw)
			}
		}
	}
	if _, err := parseConfig([]string{"serve", "--token", "a", "--admin-token", "b"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("--token with --admin-token accepted")
	}
	c, err := parseConfig([]string{"ingest", "--admin-token", "b"}, func(k string) string {
		return map[string]string{"PUSHGO_CHANNELS_PER_TENANT": "5"}[k]
	}, io.Discard)
	if err != nil || c.ingest.AdminToken != "b" || c.ingest.ChannelsPerTenant != 5 || c.ingest.DevicesPerTenant != ingest.DefaultDevicesPerTenant {
		t.Fatalf("hosted flags: %+v %v", c.ingest, err)
	}
}

// TestHostedReplicas runs two ingest replicas on one broker: a tenant made on one works on the
// other at once, a quota holds across both, and a delete on one stops the key on the other
// within the watch's delay.
func TestHostedReplicas(t *testing.T) {
	t.Parallel()
	ns := bustest.RunServer(t)
	cfg := ingest.Config{AdminToken: adminToken, ChannelsPerTenant: 6, RetryBudget: time.Second}
	r1, r2 := runIngest(t, ns.ClientURL(), cfg, nil), runIngest(t, ns.ClientURL(), cfg, nil)
	runLifecycle(t, ns.ClientURL())
	runDispatch(t, ns.ClientURL(), dispatch.Config{}, nil)
	r1.waitReady(t)
	r2.waitReady(t)
	id, key := r1.newTenant(t, "acme", nil)
	r2.tenantChannel(t, key) // made on r1, used on r2 at once

	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]int{}
	for i := range 10 {
		wg.Go(func() {
			g := []*gateway{r1, r2}[i%2]
			body := mustJSON(t, obj{"channel_name": "c", "password": "secret-123"})
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, g.url+"/channel/create", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer func() { _ = resp.Body.Close() }()
			var env envelope
			_ = json.NewDecoder(resp.Body).Decode(&env)
			c := "ok"
			if env.ErrorCode != nil {
				c = *env.ErrorCode
			}
			mu.Lock()
			answers[c]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if answers["ok"] != 5 || answers["quota_exceeded"] != 5 {
		t.Fatalf("answers %v: want 5 more channels and 5 refusals (limit 6)", answers)
	}
	if u := r2.okAs(t, adminToken, "/admin/tenant/usage", obj{"tenant_id": id}); u["channels"].(float64) != 6 {
		t.Fatalf("usage %v", u)
	}

	r2.okAs(t, adminToken, "/admin/tenant/delete", obj{"tenant_id": id})
	if r := r2.as(t, key, "/channel/create", obj{"channel_name": "c", "password": "secret-123"}); r.code() != "authentication_failed" {
		t.Fatalf("deleting replica: %s", r.raw)
	}
	start, accepted := time.Now(), 0
	eventually(t, 2*time.Second, "the other replica to refuse the deleted key", func() bool {
		refused := r1.as(t, key, "/event/list", obj{"channel_id": "00000000000000000000000000", "password": "secret-123"}).code() == "authentication_failed"
		if !refused {
			accepted++
		}
		return refused
	})
	t.Logf("the other replica refused the deleted tenant's key after %s (%d requests accepted before)", time.Since(start), accepted)
}

// TestHostedGRPC: the gRPC API authenticates the same way (the interceptor), admin routes
// included.
func TestHostedGRPC(t *testing.T) {
	t.Parallel()
	ns := bustest.RunServer(t)
	grpcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	runIngest(t, ns.ClientURL(), ingest.Config{AdminToken: adminToken, RetryBudget: time.Second}, grpcLn)
	cc, err := grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	admin, chans, msgs := apiv1.NewTenantServiceClient(cc), apiv1.NewChannelServiceClient(cc), apiv1.NewMessageServiceClient(cc)
	reason := func(err error) string {
		for _, d := range status.Convert(err).Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				return info.GetReason()
			}
		}
		return ""
	}
	with := func(cred string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+cred) }
	adminCtx := metadata.NewOutgoingContext(t.Context(), with(adminToken))
	var created *apiv1.CreateTenantResponse
	eventually(t, 10*time.Second, "gRPC ready", func() bool {
		created, err = admin.Create(adminCtx, &apiv1.CreateTenantRequest{Name: "g"})
		return err == nil
	})
	if _, err := admin.List(t.Context(), &apiv1.ListTenantsRequest{}); status.Code(err) != codes.Unauthenticated || reason(err) != "authentication_failed" {
		t.Fatalf("admin without token: %v", err)
	}
	tenantCtx := metadata.NewOutgoingContext(t.Context(), with(created.GetApiKey()))
	if _, err := admin.List(tenantCtx, &apiv1.ListTenantsRequest{}); reason(err) != "authentication_failed" {
		t.Fatalf("admin with a tenant key: %v", err)
	}
	if _, err := chans.Create(t.Context(), &apiv1.CreateChannelRequest{ChannelName: "g", Password: "secret-123"}); reason(err) != "authentication_failed" {
		t.Fatalf("no key: %v", err)
	}
	if _, err := chans.Create(tenantCtx, &apiv1.CreateChannelRequest{ChannelName: "g", Password: "secret-123"}); err != nil {
		t.Fatalf("with the key: %v", err)
	}
	if _, err := msgs.Pull(t.Context(), &apiv1.PullRequest{DeviceKey: "0123456789abcdef0123456789abcdef"}); reason(err) != "device_key_not_found" {
		t.Fatalf("a device-keyed method takes no key: %v", err)
	}
}

// TestTenantCLI drives `pushgo tenant …` (its run function) against a hosted gateway.
func TestTenantCLI(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{adminToken: adminToken})
	env := func(k string) string {
		return map[string]string{"PUSHGO_URL": g.url, "PUSHGO_ADMIN_TOKEN": adminToken}[k]
	}
	run := func(args ...string) (int, map[string]any, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := tenantCommand(t.Context(), args, env, &stdout, &stderr)
		var data map[string]any
		if code == 0 {
			if err := json.Unmarshal(stdout.Bytes(), &data); err != nil {
				t.Fatalf("%v: stdout is not JSON: %q", args, stdout.String())
			}
		}
		return code, data, stderr.String()
	}
	code, created, _ := run("create", "--name", "cli", "--channels", "1", "--ops-per-second", "0")
	if code != 0 || created["name"] != "cli" || !strings.HasPrefix(created["api_key"].(string), "pgk_") {
		t.Fatalf("create: %d %v", code, created)
	}
	id, key := created["tenant_id"].(string), created["api_key"].(string)
	if lim := created["limits"].(map[string]any); lim["channels"].(float64) != 1 || lim["ops_per_second"].(float64) != 0 || lim["devices"] != nil {
		t.Fatalf("limits %v", lim)
	}
	g.tenantChannel(t, key)
	if code, data, _ := run("update", "--tenant-id", id, "--name", "renamed", "--devices", "9"); code != 0 || data["name"] != "renamed" ||
		data["limits"].(map[string]any)["devices"].(float64) != 9 || data["limits"].(map[string]any)["channels"] != nil {
		t.Fatalf("update: %d %v", code, data)
	}
	if code, data, _ := run("list"); code != 0 || len(data["tenants"].([]any)) != 1 {
		t.Fatalf("list: %d %v", code, data)
	}
	if code, data, _ := run("usage", "--tenant-id", id); code != 0 || data["channels"].(float64) != 1 {
		t.Fatalf("usage: %d %v", code, data)
	}
	if code, data, _ := run("delete", "--tenant-id", id); code != 0 || data["deleted"] != true {
		t.Fatalf("delete: %d %v", code, data)
	}
	// Errors: the envelope on stderr, exit 1 for 4xx.
	code, _, stderr := run("delete", "--tenant-id", id)
	if code != 1 || !strings.Contains(stderr, `"error_code":"tenant_not_found"`) {
		t.Fatalf("second delete: %d %q", code, stderr)
	}
	var out, errOut bytes.Buffer
	if code := tenantCommand(t.Context(), []string{"list", "--admin-token", "wrong"}, env, &out, &errOut); code != 1 ||
		!strings.Contains(errOut.String(), "authentication_failed") || out.Len() != 0 {
		t.Fatalf("wrong token: %d %q %q", code, out.String(), errOut.String())
	}
	// No answer: exit 2. Bad usage: exit 2.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	_ = ln.Close()
	if code := tenantCommand(t.Context(), []string{"list", "--url", dead}, env, &out, &errOut); code != 2 {
		t.Fatalf("no gateway: exit %d", code)
	}
	for _, args := range [][]string{{}, {"frobnicate"}, {"list", "--name", "x"}, {"create", "extra"}} {
		if code := tenantCommand(t.Context(), args, env, io.Discard, io.Discard); code != 2 {
			t.Fatalf("%v: exit %d, want 2", args, code)
		}
	}
}

// TestHostedSecretsStayOffTheBusAndOutOfLogs: neither the admin token nor an API key (nor its
// secret half) crosses the bus or reaches the logs, whatever the requests.
func TestHostedSecretsStayOffTheBusAndOutOfLogs(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	g := startGateway(t, gatewayOpts{adminToken: adminToken,
		logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	var mu sync.Mutex
	var captured [][]byte
	tap, err := nats.Connect(g.ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tap.Close)
	if _, err := tap.Subscribe(">", func(m *nats.Msg) {
		mu.Lock()
		captured = append(captured, append([]byte(m.Subject+" "), m.Data...))
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := tap.Flush(); err != nil {
		t.Fatal(err)
	}
	id, key := g.newTenant(t, "acme", nil)
	ch := g.tenantChannel(t, key)
	g.okAs(t, key, "/event/create", createBody(ch, nil))
	g.as(t, key+"0", "/event/create", createBody(ch, nil))
	g.as(t, adminToken+"x", "/admin/tenant/list", obj{})
	g.okAs(t, adminToken, "/admin/tenant/usage", obj{"tenant_id": id})
	g.okAs(t, adminToken, "/admin/tenant/delete", obj{"tenant_id": id})
	g.as(t, key, "/event/create", createBody(ch, nil))
	if err := tap.Flush(); err != nil {
		t.Fatal(err)
	}
	secret := key[len(key)-64:]
	mu.Lock()
	defer mu.Unlock()
	sawTenant := false
	for _, m := range captured {
		if bytes.Contains(m, []byte(secret)) || bytes.Contains(m, []byte(adminToken)) {
			t.Fatalf("a secret crossed the bus: %q", m)
		}
		sawTenant = sawTenant || bytes.Contains(m, []byte("pushgo_tenants"))
	}
	if !sawTenant {
		t.Fatalf("the tap saw no write to the tenants bucket in %d messages", len(captured))
	}
	if l := logs.String(); strings.Contains(l, secret) || strings.Contains(l, adminToken) {
		t.Fatalf("a secret is in the logs:\n%s", l)
	}
}
