package tenants

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

var quiet = slog.New(slog.DiscardHandler)

func code(err error) string {
	if e, ok := apierr.As(err); ok {
		return e.Code
	}
	return ""
}

func u32(n uint32) *uint32 { return &n }

func TestParseKey(t *testing.T) {
	t.Parallel()
	id := strings.Repeat("a1", 16)
	secret := strings.Repeat("0f", 32)
	tests := []struct {
		name, key string
		wantID    string
		wantOK    bool
	}{
		{"well formed", "pgk_" + id + "_" + secret, id, true},
		{"no prefix", id + "_" + secret, "", false},
		{"other prefix", "pgx_" + id + "_" + secret, "", false},
		{"short secret", "pgk_" + id + "_" + secret[:63], "", false},
		{"long secret", "pgk_" + id + "_" + secret + "0", "", false},
		{"no separator", "pgk_" + id + "-" + secret, "", false},
		{"upper-case hex", "pgk_" + strings.ToUpper(id) + "_" + secret, "", false},
		{"non-hex secret", "pgk_" + id + "_" + strings.Repeat("zz", 32), "", false},
		{"empty", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := parseKey(tt.key)
			if got != tt.wantID || ok != tt.wantOK {
				t.Fatalf("parseKey(%q) = %q, %v; want %q, %v", tt.key, got, ok, tt.wantID, tt.wantOK)
			}
		})
	}
}

func TestEffectiveLimits(t *testing.T) {
	t.Parallel()
	defaults := Limits{OpsPerSecond: 1000, Channels: 1000, Devices: 100_000, Streams: 10_000, SubscribersPerChannel: 10_000}
	tests := []struct {
		name      string
		overrides *apiv1.TenantLimits
		want      Limits
	}{
		{"none", nil, defaults},
		{"empty", &apiv1.TenantLimits{}, defaults},
		{"some", &apiv1.TenantLimits{Channels: u32(5), OpsPerSecond: u32(50)},
			Limits{OpsPerSecond: 50, Channels: 5, Devices: 100_000, Streams: 10_000, SubscribersPerChannel: 10_000}},
		{"zero turns a limit off", &apiv1.TenantLimits{Devices: u32(0), Streams: u32(0), SubscribersPerChannel: u32(3)},
			Limits{OpsPerSecond: 1000, Channels: 1000, Devices: 0, Streams: 0, SubscribersPerChannel: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := effective(tt.overrides, defaults); got != tt.want {
				t.Fatalf("effective = %+v, want %+v", got, tt.want)
			}
		})
	}
}

// TestPathAndMethodClassAgree: the REST middleware classifies by path, the gRPC interceptor by
// method; for every REST route of every service the two must say the same, so a route cannot
// be open over one transport and closed over the other.
func TestPathAndMethodClassAgree(t *testing.T) {
	t.Parallel()
	files := []protoreflect.FileDescriptor{apiv1.File_pushgo_api_v1_event_proto, apiv1.File_pushgo_api_v1_channel_proto,
		apiv1.File_pushgo_api_v1_device_proto, apiv1.File_pushgo_api_v1_tenant_proto}
	seen := map[Class]int{}
	for _, f := range files {
		for i := range f.Services().Len() {
			sd := f.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				rule, _ := proto.GetExtension(md.Options(), annotations.E_Http).(*annotations.HttpRule)
				path := rule.GetPost()
				method := "/" + string(sd.FullName()) + "/" + string(md.Name())
				if path == "" {
					t.Fatalf("%s has no POST rule", method)
				}
				if pc, mc := PathClass(path), MethodClass(method); pc != mc {
					t.Errorf("%s: path class %d, method %s class %d", path, pc, method, mc)
				}
				seen[MethodClass(method)]++
			}
		}
	}
	if seen[ClassTenant] == 0 || seen[ClassDevice] != 2 || seen[ClassAdmin] != 5 {
		t.Fatalf("classes seen %v: want tenant routes, 2 device-keyed and 5 admin ones", seen)
	}
	for _, p := range []string{"/device/stream", "/device/ws"} {
		if PathClass(p) != ClassDevice {
			t.Errorf("%s is not device-keyed", p)
		}
	}
	if PathClass("/healthz") != ClassOpen || PathClass("/readyz") != ClassOpen || PathClass("/nope") != ClassTenant {
		t.Error("health routes must be open and unknown paths need a key")
	}
	if PathClass("/metrics") != ClassAdmin || MethodClass("/grpc.health.v1.Health/Check") != ClassOpen {
		t.Error("metrics take the admin token, and the gRPC health service nothing")
	}
}

// replicas starts one broker and n stores on it, as n ingest replicas would run.
func replicas(t *testing.T, n int, defaults Limits) ([]*Store, jetstream.JetStream) {
	t.Helper()
	s, _, js := bustest.Provisioned(t)
	stores := make([]*Store, n)
	for i := range stores {
		nc := bustest.Connect(t, s)
		rjs, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if stores[i], err = New(t.Context(), rjs, Config{Defaults: defaults, RetryBudget: time.Second}, quiet); err != nil {
			t.Fatal(err)
		}
	}
	return stores, js
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	stores, js := replicas(t, 2, Limits{Channels: 7})
	a, b := stores[0], stores[1]
	ctx := t.Context()
	rec, key, err := a.Create(ctx, "acme", &apiv1.TenantLimits{Devices: u32(3)})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(key, "pgk_"+rec.GetTenantId()+"_") || len(key) != 4+32+1+64 {
		t.Fatalf("key %q", key)
	}
	// Only the hash is stored.
	kv, err := js.KeyValue(ctx, bus.BucketTenants)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, bus.TenantKey(rec.GetTenantId()))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(key))
	if strings.Contains(string(e.Value()), key[len(key)-64:]) || string(rec.GetApiKeyHash()) != string(sum[:]) {
		t.Fatal("the stored record holds the key's secret, or not its hash")
	}

	// The key works on both replicas at once: b has not seen the tenant yet and reads it.
	for i, s := range stores {
		tn, err := s.Authenticate(ctx, key)
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		if tn.ID != rec.GetTenantId() || tn.Name != "acme" || tn.Limits.Channels != 7 || tn.Limits.Devices != 3 {
			t.Fatalf("replica %d: tenant %+v", i, tn)
		}
	}
	wrongSecret := key[:len(key)-1] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", key[len(key)-1])+1)%16])
	otherID := "pgk_" + strings.Repeat("0", 32) + key[4+32:]
	for _, bad := range []string{wrongSecret, otherID, "", "pgk_", key + "0"} {
		if _, err := a.Authenticate(ctx, bad); code(err) != "authentication_failed" {
			t.Errorf("key %q: %v, want authentication_failed", bad, err)
		}
	}

	// Delete: the key fails on the deleting replica as soon as Delete returns, and on the
	// other one as soon as its watch delivers the delete.
	if err := a.Delete(ctx, rec.GetTenantId()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, key); code(err) != "authentication_failed" {
		t.Fatalf("deleting replica after delete: %v", err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := b.Authenticate(ctx, key)
		if code(err) == "authentication_failed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other replica still accepts the deleted tenant's key after 2s: %v", err)
		}
		waitABit(t)
	}
	if err := a.Delete(ctx, rec.GetTenantId()); code(err) != "tenant_not_found" {
		t.Fatalf("second delete: %v", err)
	}
	if _, err := b.Update(ctx, rec.GetTenantId(), nil, false, nil); code(err) != "tenant_not_found" {
		t.Fatalf("update of a deleted tenant: %v", err)
	}
}

func waitABit(t *testing.T) {
	select {
	case <-time.After(5 * time.Millisecond):
	case <-t.Context().Done():
		t.Fatal(t.Context().Err())
	}
}

func TestUpdateAndList(t *testing.T) {
	t.Parallel()
	stores, _ := replicas(t, 2, Limits{Channels: 10, Devices: 20})
	a, b := stores[0], stores[1]
	ctx := t.Context()
	first, key, err := a.Create(ctx, "first", nil)
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := a.Create(ctx, "second", &apiv1.TenantLimits{Channels: u32(1)})
	if err != nil {
		t.Fatal(err)
	}
	name := "renamed"
	rec, err := b.Update(ctx, first.GetTenantId(), &name, true, &apiv1.TenantLimits{Devices: u32(2)})
	if err != nil {
		t.Fatal(err)
	}
	if rec.GetName() != "renamed" || rec.GetLimits().Devices == nil || rec.GetLimits().Channels != nil {
		t.Fatalf("updated %v", rec)
	}
	// The change reaches the replica that did not make it (through its watch).
	deadline := time.Now().Add(2 * time.Second)
	for {
		tn, err := a.Authenticate(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if tn.Name == "renamed" && tn.Limits == (Limits{Channels: 10, Devices: 2}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica a still sees %+v", tn)
		}
		waitABit(t)
	}
	// limits absent: unchanged.
	if rec, err = a.Update(ctx, first.GetTenantId(), nil, false, nil); err != nil || rec.GetLimits().GetDevices() != 2 {
		t.Fatalf("update without limits: %v %v", rec, err)
	}
	list, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Oldest first; two tenants made in the same millisecond come in tenant id order.
	want := []string{first.GetTenantId(), second.GetTenantId()}
	if first.GetCreatedAt() == second.GetCreatedAt() {
		slices.Sort(want)
	}
	if len(list) != 2 || list[0].GetTenantId() != want[0] || list[1].GetTenantId() != want[1] {
		t.Fatalf("list %v, want the ids %v", list, want)
	}
	if err := b.Delete(ctx, second.GetTenantId()); err != nil {
		t.Fatal(err)
	}
	if list, err = a.List(ctx); err != nil || len(list) != 1 {
		t.Fatalf("list after delete: %v %v", list, err)
	}
}

// TestQuotaHoldsAcrossReplicas: two replicas reserving at once for one tenant admit exactly
// its limit between them.
func TestQuotaHoldsAcrossReplicas(t *testing.T) {
	t.Parallel()
	stores, _ := replicas(t, 2, Limits{Channels: 10})
	ctx := t.Context()
	rec, key, err := stores[0].Create(ctx, "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	var ok, refused atomic.Int32
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			s := stores[i%2]
			tn, err := s.Authenticate(ctx, key)
			if err != nil {
				t.Error(err)
				return
			}
			_, err = Reserve(WithTenant(ctx, tn), Channels)
			switch code(err) {
			case "":
				ok.Add(1)
			case "quota_exceeded":
				refused.Add(1)
			default:
				t.Errorf("reserve: %v", err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 || refused.Load() != 20 {
		t.Fatalf("admitted %d, refused %d; want 10 and 20", ok.Load(), refused.Load())
	}
	usage, err := stores[1].Usage(ctx, rec.GetTenantId())
	if err != nil {
		t.Fatal(err)
	}
	if usage.GetChannels() != 10 || usage.GetDevices() != 0 {
		t.Fatalf("usage %v", usage)
	}
	// A released unit can be taken again, by the other replica.
	tn, _ := stores[0].Authenticate(ctx, key)
	r, err := Reserve(WithTenant(ctx, tn), Devices)
	if err != nil {
		t.Fatal(err)
	}
	r.Release(ctx)
	tn, _ = stores[0].Authenticate(ctx, key)
	if _, err := Reserve(WithTenant(ctx, tn), Channels); code(err) != "quota_exceeded" {
		t.Fatalf("11th channel: %v", err)
	}
	if usage, _ := stores[1].Usage(ctx, rec.GetTenantId()); usage.GetDevices() != 0 {
		t.Fatalf("released device still counted: %v", usage)
	}
	// A raised limit admits more (limits are read from the tenant, not cached per request).
	if _, err := stores[0].Update(ctx, rec.GetTenantId(), nil, true, &apiv1.TenantLimits{Channels: u32(11)}); err != nil {
		t.Fatal(err)
	}
	tn, _ = stores[0].Authenticate(ctx, key)
	if _, err := Reserve(WithTenant(ctx, tn), Channels); err != nil {
		t.Fatalf("after raising the limit: %v", err)
	}
}

func TestVisible(t *testing.T) {
	t.Parallel()
	stores, _ := replicas(t, 1, Limits{})
	s := stores[0]
	ctx := t.Context()
	live, _, err := s.Create(ctx, "live", nil)
	if err != nil {
		t.Fatal(err)
	}
	dead, _, err := s.Create(ctx, "dead", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, dead.GetTenantId()); err != nil {
		t.Fatal(err)
	}
	tenantCtx := WithTenant(ctx, Tenant{ID: live.GetTenantId(), store: s})
	deviceCtx := withDeviceScope(ctx, s)
	tests := []struct {
		name  string
		ctx   context.Context
		owner string
		want  bool
	}{
		{"public: no owner", ctx, "", true},
		{"public: a tenant's record", ctx, live.GetTenantId(), false},
		{"tenant: its own", tenantCtx, live.GetTenantId(), true},
		{"tenant: another's", tenantCtx, dead.GetTenantId(), false},
		{"tenant: no owner", tenantCtx, "", false},
		{"device route: live tenant", deviceCtx, live.GetTenantId(), true},
		{"device route: deleted tenant", deviceCtx, dead.GetTenantId(), false},
		{"device route: unknown tenant", deviceCtx, strings.Repeat("f", 32), false},
		{"device route: no owner", deviceCtx, "", true},
		{"admin: a tenant's record", withAdmin(ctx, s), live.GetTenantId(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Visible(tt.ctx, tt.owner)
			if err != nil || got != tt.want {
				t.Fatalf("Visible = %v, %v; want %v", got, err, tt.want)
			}
		})
	}

	// A device-keyed route learns its device's tenant (and limits) from the owner id.
	if tn, ok, err := OwnerTenant(deviceCtx, live.GetTenantId()); err != nil || !ok || tn.ID != live.GetTenantId() || tn.Name != "live" {
		t.Fatalf("OwnerTenant(live) = %+v %v %v", tn, ok, err)
	}
	for _, c := range []struct {
		ctx   context.Context
		owner string
	}{{deviceCtx, dead.GetTenantId()}, {deviceCtx, ""}, {ctx, live.GetTenantId()}} {
		if _, ok, err := OwnerTenant(c.ctx, c.owner); ok || err != nil {
			t.Fatalf("OwnerTenant(%q) = %v %v, want none", c.owner, ok, err)
		}
	}
}

func TestUsageCountsOpsAcrossFlushes(t *testing.T) {
	t.Parallel()
	stores, _ := replicas(t, 2, Limits{})
	ctx := t.Context()
	rec, key, err := stores[0].Create(ctx, "acme", nil)
	if err != nil {
		t.Fatal(err)
	}
	stores[1].cfg.Streams = func(id string) int {
		if id == rec.GetTenantId() {
			return 3
		}
		return 0
	}
	for i := range 7 {
		tn, err := stores[i%2].Authenticate(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		CountOp(WithTenant(ctx, tn))
	}
	CountOp(ctx) // no tenant: not counted anywhere
	// Replica 0 answers with what it flushed plus what it has pending; replica 1's 3 ops are
	// counted once it flushes.
	u, err := stores[0].Usage(ctx, rec.GetTenantId())
	if err != nil || u.GetOps() != 4 {
		t.Fatalf("before replica 1 flushes: %v %v", u, err)
	}
	if err := stores[1].meter.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := stores[0].meter.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	u, err = stores[1].Usage(ctx, rec.GetTenantId())
	if err != nil || u.GetOps() != 7 || u.GetDeliveries() != 0 || u.GetStreams() != 3 || u.GetDay() != time.Now().UTC().Format("2006-01-02") {
		t.Fatalf("after the flushes: %v %v", u, err)
	}
	if _, err := stores[1].Usage(ctx, strings.Repeat("0", 32)); code(err) != "tenant_not_found" {
		t.Fatalf("usage of an unknown tenant: %v", err)
	}
}
