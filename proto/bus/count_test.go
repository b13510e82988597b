package bus_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// TestCountSubjectsCountsAChannelsSubscriptions: the count is per channel, a delete marker
// keeps its subject (so it counts), and an unsubscribe made as a purge with a TTL stops
// counting once its marker expires.
func TestCountSubjectsCountsAChannelsSubscriptions(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	ctx := t.Context()
	subs, err := js.KeyValue(ctx, bus.BucketSubs)
	if err != nil {
		t.Fatal(err)
	}
	const a, b = "AAAAAAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBBBBBB"
	for _, k := range []string{bus.SubKey(a, "d1"), bus.SubKey(a, "d2"), bus.SubKey(a, "d3"), bus.SubKey(b, "d1")} {
		if _, err := subs.Put(ctx, k, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	count := func(ch string) int {
		t.Helper()
		n, err := bus.CountSubjects(ctx, nc, bus.KVStream(bus.BucketSubs), bus.ChannelSubsSubjects(ch))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if got := count(a); got != 3 {
		t.Fatalf("channel a: %d subjects, want 3", got)
	}
	if got := count(b); got != 1 {
		t.Fatalf("channel b: %d subjects, want 1", got)
	}
	if got := count("CCCCCCCCCCCCCCCCCCCCCCCCCC"); got != 0 {
		t.Fatalf("unknown channel: %d subjects, want 0", got)
	}
	// A plain delete leaves its marker, which keeps the subject alive.
	if err := subs.Delete(ctx, bus.SubKey(a, "d1")); err != nil {
		t.Fatal(err)
	}
	if got := count(a); got != 3 {
		t.Fatalf("after a delete: %d subjects, want 3 (the marker counts)", got)
	}
	// A purge with a TTL: its marker expires and the subject with it.
	if err := subs.Purge(ctx, bus.SubKey(a, "d2"), jetstream.PurgeTTL(time.Second)); err != nil {
		t.Fatalf("purge with TTL (needs per-message TTLs on the bucket): %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for count(a) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the purge marker did not expire: %d subjects", count(a))
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	if _, err := subs.Get(ctx, bus.SubKey(a, "d2")); err == nil {
		t.Fatal("the purged key is still readable")
	}
}

// TestProvisionTurnsOnMessageTTLsOfAnOldSubsBucket: a subscriptions bucket made by an earlier
// build (no per-message TTLs) gets them, or unsubscribes (purges with a TTL) would fail.
func TestProvisionTurnsOnMessageTTLsOfAnOldSubsBucket(t *testing.T) {
	t.Parallel()
	s := bustest.RunServer(t)
	js, err := jetstream.New(bustest.Connect(t, s))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bus.BucketSubs, History: 1}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(ctx, js, bus.Options{}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, bus.KVStream(bus.BucketSubs))
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; !cfg.AllowMsgTTL || cfg.AllowDirect {
		t.Fatalf("allow_msg_ttl=%v allow_direct=%v, want true, false", cfg.AllowMsgTTL, cfg.AllowDirect)
	}
}
