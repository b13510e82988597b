package quota_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/quota"
)

const chA, chB = "AAAAAAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBBBBBB"

func TestSubscribersQuota(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	ctx := t.Context()
	q, err := quota.NewSubscribers(ctx, nc, js, 2, time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	subs, err := js.KeyValue(ctx, bus.BucketSubs)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{bus.SubKey(chA, "d1"), bus.SubKey(chA, "d2"), bus.SubKey(chB, "d1")} {
		if _, err := subs.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	exceeded := func(err error) bool {
		e, ok := apierr.As(err)
		return ok && e.Code == "quota_exceeded" && e.HTTPStatus() == 403
	}

	if err := q.CheckSubscribe(ctx, chA, "d3"); !exceeded(err) {
		t.Fatalf("third device on a channel with quota 2: %v, want quota_exceeded", err)
	}
	if err := q.CheckSubscribe(ctx, chA, "d1"); err != nil {
		t.Fatalf("re-subscribing a subscribed device: %v", err)
	}
	if err := q.CheckSubscribe(ctx, chB, "d3"); err != nil {
		t.Fatalf("another channel: %v", err)
	}

	// A tenant's own quota wins; 0 is the default, negative none.
	for _, tc := range []struct {
		limit int
		ok    bool
		want  bool // allowed
	}{{5, true, true}, {-1, true, true}, {0, true, false}, {5, false, false}} {
		q.Limit = func(context.Context) (int, bool) { return tc.limit, tc.ok }
		if err := q.CheckSubscribe(ctx, chA, "d3"); (err == nil) != tc.want {
			t.Errorf("tenant quota (%d, %v): %v, want allowed %v", tc.limit, tc.ok, err, tc.want)
		}
	}
	q.Limit = nil

	// An unsubscribe frees its slot once its marker expires (here after 1 s, not
	// bus.SubsMarkerTTL); a plain delete would hold it for ever.
	if err := subs.Purge(ctx, bus.SubKey(chA, "d2"), jetstream.PurgeTTL(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := q.CheckSubscribe(ctx, chA, "d3"); !exceeded(err) {
		t.Fatalf("while the unsubscribe's marker lives: %v, want quota_exceeded", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for q.CheckSubscribe(ctx, chA, "d3") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the slot of an unsubscribed device was not freed")
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	// Off.
	q.PerChannel = 0
	if _, err := subs.Put(ctx, bus.SubKey(chA, "d9"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := q.CheckSubscribe(ctx, chA, "d10"); err != nil {
		t.Fatalf("quota 0: %v", err)
	}
}
