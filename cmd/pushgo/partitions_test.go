package main

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus"
)

// TestPartitions (DESIGN.md §12, issue 12 part 3): with --partitions 3 every channel's commands
// and events live in its own partition's streams; the whole Event API, delivery, idempotency
// and the audit work across partitions; and a service started with another count is refused.
func TestPartitions(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{partitions: 3})
	l := g.layout()
	if l.Partitions() != 3 {
		t.Fatalf("layout has %d partitions", l.Partitions())
	}
	// Channels until every partition has one (ids are random; 40 channels miss a partition
	// with probability 3 × (2/3)^40 ≈ 1e-7).
	byPartition := map[int]string{}
	for i := 0; i < 40 && len(byPartition) < 3; i++ {
		ch := g.channel(t)
		if _, ok := byPartition[l.Of(ch)]; !ok {
			byPartition[l.Of(ch)] = ch
		}
	}
	if len(byPartition) < 3 {
		t.Fatalf("40 channels fell in %d partitions", len(byPartition))
	}
	js := g.jetStream(t)
	nc := g.natsConn(t, "ingest")
	for p := range 3 {
		ch := byPartition[p]
		dev := g.device(t, "")
		g.subscribe(t, dev, ch)
		ev := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "c"}))["event_id"].(string)
		first := g.post(t, "/event/update", opBody(ch, ev, obj{"op_id": "u"}))
		if first.status != 200 {
			t.Fatalf("partition %d update: %d %s", p, first.status, first.raw)
		}
		if again := g.post(t, "/event/update", opBody(ch, ev, obj{"op_id": "u"})); again.raw != first.raw {
			t.Errorf("partition %d: a repeated update answered %s, first %s", p, again.raw, first.raw)
		}
		if r := g.post(t, "/event/update", opBody(ch, ev, obj{"op_id": "u", "status": "other"})); r.code() != "op_id_conflict" {
			t.Errorf("partition %d: the op_id reused with another body: %d %s", p, r.status, r.raw)
		}
		g.mustOK(t, "/event/close", opBody(ch, ev, obj{"op_id": "x", "status": "success"}))

		// Read back through the API.
		get := g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
		if get["version"] != 3.0 || get["event_state"] != "CLOSED" {
			t.Errorf("partition %d: get = %v", p, get)
		}
		hist := g.mustOK(t, "/event/history", obj{"channel_id": ch, "password": "secret-123", "event_id": ev})
		if n := len(hist["entries"].([]any)); n != 3 {
			t.Errorf("partition %d: history has %d entries, want 3", p, n)
		}
		list := g.mustOK(t, "/event/list", obj{"channel_id": ch, "password": "secret-123"})
		if n := len(list["events"].([]any)); n != 1 {
			t.Errorf("partition %d: list has %d events, want 1", p, n)
		}
		if items := g.pull(t, dev); len(items) != 3 {
			t.Errorf("partition %d: the subscriber's inbox holds %d items, want 3", p, len(items))
		}

		// Stored in its partition's stream, and in no other.
		for q := range 3 {
			m, err := bus.LastMsg(t.Context(), nc, l.EventsStream(q), l.EventSubject(ch, ev))
			switch {
			case q == p && (err != nil || m.Seq == 0):
				t.Errorf("partition %d: event not in %s: %v", p, l.EventsStream(q), err)
			case q != p && !errors.Is(err, bus.ErrNotFound):
				t.Errorf("partition %d: %s answered %v for another partition's event", p, l.EventsStream(q), err)
			}
		}
	}
	for p, name := range l.EventsStreams() {
		st, err := js.Stream(t.Context(), name)
		if err != nil {
			t.Fatal(err)
		}
		if n := st.CachedInfo().State.Msgs; n != 3 {
			t.Errorf("partition %d's log %s holds %d entries, want 3", p, name, n)
		}
	}

	// The auditor reads every partition, learning the count from the store.
	code, out, errOut := g.audit(t, "verify")
	if code != 0 || summary(t, out) != "audit: events=3 entries=9 ok=9 unsigned=0 broken=0 mismatched=0" {
		t.Fatalf("audit verify of a 3-partition log: %d %s %s", code, out, errOut)
	}

	// Another count against this store: refused at start, naming the store's.
	cfg, err := parseConfig([]string{"serve", "--grpc-addr", "", "--partitions", "2"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = startAll(ctx, cfg, quiet, ln, func(string) (*nats.Conn, error) { return nats.Connect(g.ns.ClientURL()) })
	if err == nil || !strings.Contains(err.Error(), "--partitions 3") {
		t.Fatalf("a gateway with --partitions 2 on a 3-partition store: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("the refusal took the whole timeout")
	}
}
