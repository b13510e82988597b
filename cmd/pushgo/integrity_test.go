package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/logsign"
)

// The tamper-evident log (DESIGN.md §9.2, issue 11 part 2) through HTTP: entries written to
// PUSHGO_EVENTS by anyone holding credentials that may write the stream, but not the log key,
// are found by get, history, lifecycle and dispatch, and never pushed.

// idleDispatch waits until dispatch has handled every domain event in every partition.
func idleDispatch(t *testing.T, g *gateway, js jetstream.JetStream) {
	t.Helper()
	eventually(t, 15*time.Second, "dispatch to handle every domain event", func() bool {
		for _, stream := range g.layout().EventsStreams() {
			c, err := js.Consumer(t.Context(), stream, bus.ConsumerDispatch)
			if err != nil {
				return false
			}
			info, err := c.Info(t.Context())
			if err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
				return false
			}
		}
		return true
	})
}

// entryBytes returns the stored bytes and sequences of an event's entries, in order.
func entryBytes(t *testing.T, g *gateway, ch, ev string) (seqs []uint64, data [][]byte) {
	t.Helper()
	nc := g.natsConn(t, "ingest")
	err := bus.LeaderRange(t.Context(), nc, g.layout().EventsStreamOf(ch), g.layout().EventSubject(ch, ev), 1, 0, func(m *bus.Msg) error {
		seqs, data = append(seqs, m.Seq), append(data, m.Data)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seqs, data
}

func TestTamperedLogIsDetected(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOpts{allowPrivate: true})
	js := g.jetStream(t)
	ch := g.channel(t)
	hook := newHookReceiver(t)
	g.hook(t, hook, ch)
	// The subscription reaches dispatch's view of the channel in a moment: create until a push
	// arrives.
	warm := 0
	eventually(t, 10*time.Second, "a first push to the webhook", func() bool {
		warm++
		g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": fmt.Sprint("warm-", warm)}))
		got, _ := hook.received()
		return len(got) > 0
	})
	idleDispatch(t, g, js)
	before, _ := hook.received()

	// Events with three entries each (create, update, close), one per kind of tampering.
	event := func(name string) string {
		ev := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": name + "-c"}))["event_id"].(string)
		g.mustOK(t, "/event/update", opBody(ch, ev, obj{"op_id": name + "-u"}))
		g.mustOK(t, "/event/close", opBody(ch, ev, obj{"op_id": name + "-x", "status": "success"}))
		return ev
	}
	names := []string{"unsigned", "stranger", "altered", "replayed", "intact"}
	evs := map[string]string{}
	for _, n := range names {
		evs[n] = event(n)
	}
	idleDispatch(t, g, js)
	legit, _ := hook.received()
	if len(legit)-len(before) != 3*len(names) {
		t.Fatalf("%d pushes for %d ops", len(legit)-len(before), 3*len(names))
	}

	forged := func(ev string) *busv1.EventRecorded {
		return &busv1.EventRecorded{
			Envelope: &busv1.Envelope{Id: "forged-" + ev, Type: "event.updated", ChannelId: ch, EventId: ev, OpId: "forged", RecordedAt: time.Now().UnixMilli(), SchemaVersion: 1},
			Route:    "update", CommandId: "forged", Applied: true, Version: 4,
			Fields: &apiv1.EventFields{Status: "FORGED"},
			State:  &apiv1.Event{EventId: ev, ChannelId: ch, EventState: "ONGOING", Status: "FORGED", Version: 4},
		}
	}
	publish := func(ev string, data []byte) {
		t.Helper()
		if _, err := js.Publish(t.Context(), g.layout().EventSubject(ch, ev), data); err != nil {
			t.Fatal(err)
		}
	}
	// 1. The forgery: a hand-made entry, unsigned.
	data, _ := proto.Marshal(forged(evs["unsigned"]))
	publish(evs["unsigned"], data)
	// 2. The same, signed with a key of the forger's own.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	seqs, stored := entryBytes(t, g, ch, evs["stranger"])
	data, err := logsign.NewSigner(priv).Seal(forged(evs["stranger"]), &logsign.Entry{Seq: seqs[2], Data: stored[2]})
	if err != nil {
		t.Fatal(err)
	}
	publish(evs["stranger"], data)
	// 3. A copy of a real entry with one byte of its state changed.
	_, stored = entryBytes(t, g, ch, evs["altered"])
	altered := bytes.Replace(stored[2], []byte("success"), []byte("SUCCESS"), 1)
	if bytes.Equal(altered, stored[2]) {
		t.Fatal("the close entry has no status to alter")
	}
	publish(evs["altered"], altered)
	// 4. A real entry replayed: the event's create, appended again after its close.
	_, stored = entryBytes(t, g, ch, evs["replayed"])
	publish(evs["replayed"], stored[0])
	// (A removed entry cannot be made through the API: PUSHGO_EVENTS denies deletes and
	// purges, and JetStream refuses to lift that. proto/logsign's TestCheckPlace removes one
	// from a stream that allows it.)
	// 5. The stream's configuration cannot be changed to allow it.
	st, err := js.Stream(t.Context(), g.layout().EventsStreamOf(ch))
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.DenyDelete = false
	if _, err := js.UpdateStream(t.Context(), cfg); err == nil {
		t.Fatal("PUSHGO_EVENTS was made to allow deletes")
	}

	idleDispatch(t, g, js)
	if got, _ := hook.received(); len(got) != len(legit) {
		t.Fatalf("the webhook got %d pushes after the tampering: %v", len(got)-len(legit), got[len(legit):])
	}
	integrity := func(what string, r response) {
		t.Helper()
		if r.status != http.StatusInternalServerError || r.code() != "integrity_error" {
			t.Fatalf("%s: %d %s, want 500 integrity_error", what, r.status, r.raw)
		}
	}
	for _, n := range names[:4] {
		ev := evs[n]
		integrity(n+": get", g.post(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": ev}))
		integrity(n+": history", g.post(t, "/event/history", obj{"channel_id": ch, "password": "secret-123", "event_id": ev}))
	}
	// Lifecycle does not fold on a tampered head: an op on it is refused, and nothing is pushed.
	// (Its remembered head is the genuine one; the append after it fails its sequence check, and
	// the head it then reads is the forged one.)
	ongoing := g.mustOK(t, "/event/create", createBody(ch, obj{"op_id": "ongoing-c"}))["event_id"].(string)
	idleDispatch(t, g, js)
	legit, _ = hook.received()
	data, _ = proto.Marshal(forged(ongoing))
	publish(ongoing, data)
	integrity("update on the forged head", g.post(t, "/event/update", opBody(ch, ongoing, obj{"op_id": "after-forgery"})))
	// The untouched event reads as before.
	if d := g.mustOK(t, "/event/get", obj{"channel_id": ch, "password": "secret-123", "event_id": evs["intact"]}); d["event_state"] != "CLOSED" {
		t.Fatalf("the intact event: %v", d)
	}
	idleDispatch(t, g, js)
	if got, _ := hook.received(); len(got) != len(legit) {
		t.Fatalf("the webhook got %d pushes after the refused op", len(got)-len(legit))
	}
}
