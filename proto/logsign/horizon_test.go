package logsign_test

import (
	"testing"

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
