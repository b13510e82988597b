package bus_test

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// TestUsageMetersAddUp: several instances (ingest and dispatch replicas) count into the same
// tenant's day and flush at the same time; the stored counters are the exact sums.
func TestUsageMetersAddUp(t *testing.T) {
	t.Parallel()
	s, _, js := bustest.Provisioned(t)
	ctx := t.Context()
	const meters, adds = 4, 250
	ms := make([]*bus.UsageMeter, meters)
	for i := range ms {
		mjs, err := jetstream.New(bustest.Connect(t, s))
		if err != nil {
			t.Fatal(err)
		}
		if ms[i], err = bus.NewUsageMeter(ctx, mjs, time.Second, slog.New(slog.DiscardHandler)); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			for i := range adds {
				m.Add("tenant-a", 1, 2)
				m.Add("", 1, 1) // no tenant: not counted
				if i%50 == 0 {
					if err := m.Flush(ctx); err != nil {
						t.Error(err)
					}
				}
			}
			m.Add("tenant-b", 0, 5)
			if err := m.Flush(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	kv, err := js.KeyValue(ctx, bus.BucketUsage)
	if err != nil {
		t.Fatal(err)
	}
	day := bus.UsageDay(time.Now())
	a, err := bus.ReadUsage(ctx, kv, "tenant-a", day, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetOps() != meters*adds || a.GetDeliveries() != 2*meters*adds {
		t.Fatalf("tenant-a: ops %d deliveries %d, want %d and %d", a.GetOps(), a.GetDeliveries(), meters*adds, 2*meters*adds)
	}
	b, err := bus.ReadUsage(ctx, kv, "tenant-b", day, time.Second)
	if err != nil || b.GetOps() != 0 || b.GetDeliveries() != 5*meters {
		t.Fatalf("tenant-b: %v %v", b, err)
	}
	if ops, del := ms[0].Pending("tenant-a", day); ops != 0 || del != 0 {
		t.Fatalf("pending after the last flush: %d %d", ops, del)
	}
	none, err := bus.ReadUsage(ctx, kv, "tenant-c", day, time.Second)
	if err != nil || none.GetOps() != 0 || none.GetTenantId() != "tenant-c" {
		t.Fatalf("a tenant without usage: %v %v", none, err)
	}
}
