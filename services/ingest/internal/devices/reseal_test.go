package devices

import (
	"bytes"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/secretbox"
	"pushgo.dev/gateway/proto/webhook"
)

func box(t *testing.T, current byte, old ...byte) *secretbox.Box {
	t.Helper()
	var olds [][]byte
	for _, o := range old {
		olds = append(olds, bytes.Repeat([]byte{o}, secretbox.KeySize))
	}
	b, err := secretbox.New(bytes.Repeat([]byte{current}, secretbox.KeySize), olds...)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReseal: the start-up sweep seals clear secrets and those under an old key with the
// current key, leaves the rest alone, and every secret still opens to its value afterwards.
func TestReseal(t *testing.T) {
	t.Parallel()
	_, _, js := bustest.Provisioned(t)
	ctx := t.Context()
	kv, err := js.KeyValue(ctx, bus.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	oldBox, unknownBox := box(t, 1), box(t, 3)
	sealedOld := func(key, s string) string { v, _ := oldBox.Seal(s, webhook.SecretBinding(key)); return v }
	sealedUnknown, _ := unknownBox.Seal("whsec_u", webhook.SecretBinding("d-unknown"))
	devices := []struct {
		key, stored, secret string
		want                string // key id expected afterwards ("" : left as it was)
	}{
		{"d-clear", "whsec_clear", "whsec_clear", "current"},
		{"d-old", sealedOld("d-old", "whsec_old"), "whsec_old", "current"},
		{"d-private", "", "", ""},
		{"d-unknown", sealedUnknown, "", ""},
	}
	for _, d := range devices {
		data, _ := proto.Marshal(&busv1.DeviceRecord{DeviceKey: d.key, Platform: "server", ChannelType: "webhook", WebhookSecret: d.stored})
		if _, err := kv.Put(ctx, d.key, data); err != nil {
			t.Fatal(err)
		}
	}
	current := box(t, 2, 1)
	s, err := New(ctx, js, nil, webhook.URLPolicy{}, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, current)
	if err != nil {
		t.Fatal(err)
	}
	n, left, err := s.Reseal(ctx)
	if err != nil || n != 2 || left != 0 {
		t.Fatalf("Reseal() = %d sealed, %d left, %v; want 2 sealed", n, left, err)
	}
	for _, d := range devices {
		e, err := kv.Get(ctx, d.key)
		if err != nil {
			t.Fatal(err)
		}
		rec := &busv1.DeviceRecord{}
		if err := proto.Unmarshal(e.Value(), rec); err != nil {
			t.Fatal(err)
		}
		got := rec.GetWebhookSecret()
		if d.want == "" {
			if got != d.stored {
				t.Errorf("%s: stored %q changed to %q", d.key, d.stored, got)
			}
			continue
		}
		if current.NeedsReseal(got) || !secretbox.IsSealed(got) {
			t.Errorf("%s: %q not sealed with the current key %s", d.key, got, current.CurrentKeyID())
		}
		if plain, err := current.Open(got, webhook.SecretBinding(d.key)); err != nil || plain != d.secret {
			t.Errorf("%s: opens to %q, %v; want %q", d.key, plain, err, d.secret)
		}
	}
	// A second sweep finds nothing left to do.
	if n, _, err := s.Reseal(ctx); err != nil || n != 0 {
		t.Fatalf("second Reseal() = %d, %v", n, err)
	}
	// Nil box: nothing to do, nothing touched.
	plain, err := New(ctx, js, nil, webhook.URLPolicy{}, time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, _, err := plain.Reseal(ctx); err != nil || n != 0 {
		t.Fatalf("Reseal() without a key = %d, %v", n, err)
	}
}
