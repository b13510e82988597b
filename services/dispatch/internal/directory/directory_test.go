package directory

import (
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

func TestDirectoryFollowsBuckets(t *testing.T) {
	t.Parallel()
	_, _, js := bustest.Provisioned(t)
	ctx := t.Context()
	subs, err := js.KeyValue(ctx, bus.BucketSubs)
	if err != nil {
		t.Fatal(err)
	}
	devs, err := js.KeyValue(ctx, bus.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, rec *busv1.DeviceRecord) {
		b, err := proto.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := devs.Put(ctx, key, b); err != nil {
			t.Fatal(err)
		}
	}
	const ch = "06J0FZG1Y8XGG14VTQ4Y3G10MR"
	// Present before Start: loaded as the initial values.
	put("a", &busv1.DeviceRecord{DeviceKey: "a", ChannelType: "private"})
	if _, err := subs.Put(ctx, bus.SubKey(ch, "a"), []byte{}); err != nil {
		t.Fatal(err)
	}
	d, err := Start(ctx, js, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	keys := func() []string {
		var out []string
		for _, r := range d.Targets(ch) {
			out = append(out, r.GetDeviceKey())
		}
		return out
	}
	if got := keys(); len(got) != 1 || got[0] != "a" {
		t.Fatalf("initial targets %v", got)
	}
	// Changes after Start: a new device, a subscription of an unknown device (left out until
	// the device exists), a replaced device and one whose provider token is dead (left out),
	// an unsubscribe.
	put("b", &busv1.DeviceRecord{DeviceKey: "b", ChannelType: "webhook"})
	put("c", &busv1.DeviceRecord{DeviceKey: "c", ChannelType: "private", ReplacedBy: "z"})
	put("d", &busv1.DeviceRecord{DeviceKey: "d", ChannelType: "apns", RouteInvalid: "apns_unregistered"})
	for _, k := range []string{"b", "c", "d", "ghost"} {
		if _, err := subs.Put(ctx, bus.SubKey(ch, k), []byte{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := subs.Delete(ctx, bus.SubKey(ch, "a")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for got := keys(); len(got) != 1 || got[0] != "b"; got = keys() {
		if time.Now().After(deadline) {
			t.Fatalf("targets %v, want [b]", got)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	if d.Device("b").GetChannelType() != "webhook" || d.Device("nope") != nil {
		t.Fatalf("Device lookups: %v %v", d.Device("b"), d.Device("nope"))
	}
}
