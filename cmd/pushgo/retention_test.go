package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// TestShorterRetentionRefusedAtStart: a gateway started with a shorter --events-max-age than
// its store's does not start, and says which flag would let it; with the flag it starts and
// the store keeps the shorter age.
func TestShorterRetentionRefusedAtStart(t *testing.T) {
	t.Parallel()
	ns, _, js := bustest.Provisioned(t) // 30 days
	// start runs a gateway with args; it stops when stop is called, and done gets what it returned.
	start := func(args ...string) (url string, stop func(), done chan error) {
		cfg, err := parseConfig(append([]string{"serve", "--grpc-addr", ""}, args...), func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		t.Cleanup(cancel)
		done = make(chan error, 1)
		go func() {
			done <- startAll(ctx, cfg, quiet, ln, func(string) (*nats.Conn, error) { return nats.Connect(ns.ClientURL()) })
		}()
		return "http://" + ln.Addr().String(), cancel, done
	}
	_, _, done := start("--events-max-age", "24h")
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "--confirm-shorter-retention") {
			t.Fatalf("start with a shorter retention = %v, want a refusal naming --confirm-shorter-retention", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("a gateway with a shorter retention started")
	}
	maxAge := func() time.Duration {
		st, err := js.Stream(t.Context(), bus.StreamEvents)
		if err != nil {
			t.Fatal(err)
		}
		return st.CachedInfo().Config.MaxAge
	}
	if got := maxAge(); got != bus.DefaultEventsMaxAge {
		t.Fatalf("refused start changed the retention to %s", got)
	}
	url, stop, done := start("--events-max-age", "24h", "--confirm-shorter-retention")
	g := &gateway{url: url}
	g.waitReady(t)
	g.mustOK(t, "/event/create", createBody(g.channel(t), nil)) // every service is running
	if got := maxAge(); got != 24*time.Hour {
		t.Fatalf("confirmed retention = %s, want 24h", got)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("confirmed gateway stopped with %v", err)
	}
}
