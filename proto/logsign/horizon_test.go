package logsign_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	"pushgo.dev/gateway/proto/logsign"
)

// TestHorizon: a store with unsigned entries gets its horizon after them; it survives another
// Provision; a reader loads it; a horizon signed by a key not in the ring is refused.
func TestHorizon(t *testing.T) {
	t.Parallel()
	_, _, js := bustest.Provisioned(t)
	for range 3 { // written by code that did not sign
		if _, err := js.Publish(t.Context(), bus.EventSubject("c", "e"), []byte{}); err != nil {
			t.Fatal(err)
		}
	}
	s := newSigner(t)
	lc := logsign.NewVerifier(s.Public())
	if err := lc.EnsureHorizon(t.Context(), js, bus.StreamEvents, s); err != nil {
		t.Fatal(err)
	}
	if got := lc.SignedFrom(); got != 4 {
		t.Fatalf("horizon %d, want 4", got)
	}
	if err := bus.Provision(t.Context(), js, bus.Options{}); err != nil {
		t.Fatal(err)
	}
	// A second start keeps it, though the stream has grown.
	if _, err := js.Publish(t.Context(), bus.EventSubject("c", "e"), []byte{}); err != nil {
		t.Fatal(err)
	}
	if err := lc.EnsureHorizon(t.Context(), js, bus.StreamEvents, s); err != nil || lc.SignedFrom() != 4 {
		t.Fatalf("after Provision and a restart: horizon %d, %v", lc.SignedFrom(), err)
	}
	reader := logsign.NewVerifier(s.Public())
	if err := reader.LoadHorizon(t.Context(), js, bus.StreamEvents); err != nil || reader.SignedFrom() != 4 {
		t.Fatalf("reader: horizon %d, %v", reader.SignedFrom(), err)
	}
	stranger := logsign.NewVerifier(newSigner(t).Public())
	if err := stranger.LoadHorizon(t.Context(), js, bus.StreamEvents); err == nil || stranger.SignedFrom() != 0 {
		t.Fatalf("a horizon of an unknown key was loaded: %d, %v", stranger.SignedFrom(), err)
	}
}

// TestHorizonFreshStore: on an empty store every entry must be signed.
func TestHorizonFreshStore(t *testing.T) {
	t.Parallel()
	_, _, js := bustest.Provisioned(t)
	s := newSigner(t)
	v := logsign.NewVerifier(s.Public())
	if err := v.EnsureHorizon(t.Context(), js, bus.StreamEvents, s); err != nil || v.SignedFrom() != 1 {
		t.Fatalf("horizon %d, %v; want 1", v.SignedFrom(), err)
	}
}

// TestFollowHorizonBeforeTheStream: a reader that starts before lifecycle made the log (ingest
// in pushgo serve may) follows the horizon instead of failing, strict meanwhile, and learns it
// once the stream exists.
func TestFollowHorizonBeforeTheStream(t *testing.T) {
	t.Parallel()
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	signer := newSigner(t)
	v := logsign.NewVerifier(signer.Public())
	if err := v.FollowHorizon(t.Context(), js, bus.StreamEvents, slog.New(slog.DiscardHandler)); err != nil || v.SignedFrom() != 0 {
		t.Fatalf("before the stream: horizon %d, %v; want unknown, no error", v.SignedFrom(), err)
	}
	if err := bus.Provision(t.Context(), js, bus.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := logsign.NewVerifier(signer.Public()).EnsureHorizon(t.Context(), js, bus.StreamEvents, signer); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 10*time.Second, "the horizon followed", func() bool { return v.SignedFrom() == 1 })
}
