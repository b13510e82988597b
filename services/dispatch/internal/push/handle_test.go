package push

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// noTargets is a channel without subscribers.
type noTargets struct{}

func (noTargets) Targets(string) []*busv1.DeviceRecord { return nil }
func (noTargets) Device(string) *busv1.DeviceRecord    { return nil }

// fakeMsg is a domain event handed to Handle, delivered for the given time; it records how it
// was settled.
type fakeMsg struct {
	data      []byte
	delivered uint64
	settled   string
}

func (m *fakeMsg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{NumDelivered: m.delivered, Sequence: jetstream.SequencePair{Stream: 7, Consumer: 7}}, nil
}
func (m *fakeMsg) Data() []byte                     { return m.data }
func (m *fakeMsg) Headers() nats.Header             { return nats.Header{} }
func (m *fakeMsg) Subject() string                  { return bus.EventSubject("ch", "ev") }
func (m *fakeMsg) Reply() string                    { return "" }
func (m *fakeMsg) Ack() error                       { m.settled = "ack"; return nil }
func (m *fakeMsg) DoubleAck(context.Context) error  { m.settled = "ack"; return nil }
func (m *fakeMsg) Nak() error                       { m.settled = "nak"; return nil }
func (m *fakeMsg) NakWithDelay(time.Duration) error { m.settled = "nak"; return nil }
func (m *fakeMsg) InProgress() error                { return nil }
func (m *fakeMsg) Term() error                      { m.settled = "term"; return nil }
func (m *fakeMsg) TermWithReason(string) error      { m.settled = "term"; return nil }

// A redelivered domain event whose op record cannot be decoded is delivered again and its
// outcome recorded, instead of failing on every redelivery.
func TestRedeliveryOverCorruptRecord(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	h, err := New(t.Context(), js, noTargets{}, Config{Budget: 5 * time.Second}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	kv, err := js.KeyValue(t.Context(), bus.BucketOps)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(t.Context(), bus.OpKey("ch", "op-1"), []byte("\xffcorrupt")); err != nil {
		t.Fatal(err)
	}
	data, err := proto.Marshal(&busv1.EventRecorded{
		Envelope:  &busv1.Envelope{Id: "evt:ch:op-1:c1", ChannelId: "ch", EventId: "ev", OpId: "op-1"},
		Route:     "update",
		CommandId: "c1",
		Applied:   true,
		Version:   2,
		State:     &apiv1.Event{EventId: "ev", ChannelId: "ch", EventState: "ONGOING", Version: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeMsg{data: data, delivered: 2}
	h.Handle(t.Context(), m)
	if m.settled != "ack" {
		t.Fatalf("message settled %q, want ack", m.settled)
	}
	rec, err := bus.LookupOutcome(t.Context(), nc, "ch", "op-1", "c1", time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if rec.GetState() != busv1.OpState_OP_STATE_DONE || rec.GetOutcome().GetHttpStatus() != 200 || rec.GetCommandId() != "c1" {
		t.Fatalf("journaled %v, want the op's 200", rec)
	}
}

// rejectingKV is an ops bucket that refuses every write for good.
type rejectingKV struct{ jetstream.KeyValue }

func (rejectingKV) Put(context.Context, string, []byte) (uint64, error) {
	return 0, errors.New("write rejected")
}

func (rejectingKV) Get(context.Context, string) (jetstream.KeyValueEntry, error) {
	return nil, jetstream.ErrKeyNotFound
}

// A domain event whose outcome can never be recorded (here the journal is closed) is
// retried, then given up on.
func TestGiveUpOnPermanentFailure(t *testing.T) {
	t.Parallel()
	_, _, js := bustest.Provisioned(t)
	journal := bus.NewJournal(js, slog.New(slog.DiscardHandler))
	journal.Close()
	data, err := proto.Marshal(&busv1.EventRecorded{
		Envelope: &busv1.Envelope{Id: "evt:ch:op-2:c2", ChannelId: "ch", EventId: "ev", OpId: "op-2"},
		Route:    "update", CommandId: "c2", Applied: true, Version: 2,
		State: &apiv1.Event{EventId: "ev", ChannelId: "ch", EventState: "ONGOING", Version: 2},
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Budget: time.Second}
	h := &Handler{cfg: cfg, js: js, ops: rejectingKV{}, journal: journal, dir: noTargets{}, hooks: newWebhookSender(cfg),
		log: slog.New(slog.DiscardHandler), now: time.Now}
	for _, tt := range []struct {
		delivered uint64
		want      string
	}{{1, "nak"}, {giveUpAfter - 1, "nak"}, {giveUpAfter, "term"}} {
		m := &fakeMsg{data: data, delivered: tt.delivered}
		h.Handle(t.Context(), m)
		if m.settled != tt.want {
			t.Errorf("delivery %d: settled %q, want %q", tt.delivered, m.settled, tt.want)
		}
	}
}

// oneDevice is a channel with one private (inbox) subscriber.
type oneDevice struct{}

var device = &busv1.DeviceRecord{DeviceKey: fmt.Sprintf("%032x", 1), Platform: "android", ChannelType: RoutePrivate}

func (oneDevice) Targets(string) []*busv1.DeviceRecord { return []*busv1.DeviceRecord{device} }
func (oneDevice) Device(string) *busv1.DeviceRecord    { return device }

// A domain event redelivered after the instance that journaled its outcome died before acking
// is not delivered again: the journaled outcome is announced once more for a request still
// waiting, and the message acked. A first delivery of another op is delivered (the control).
func TestRedeliveryOfAJournaledOpDeliversNothing(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	log := slog.New(slog.DiscardHandler)
	h, err := New(t.Context(), js, oneDevice{}, Config{Budget: 5 * time.Second}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	announced, err := nc.SubscribeSync(bus.OutcomeSubjects)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	event := func(op string) (*busv1.Envelope, []byte) {
		env := &busv1.Envelope{Id: "evt:ch:" + op + ":c-" + op, ChannelId: "ch", EventId: "ev", OpId: op, RecordedAt: now}
		data, err := proto.Marshal(&busv1.EventRecorded{Envelope: env, Route: "update", CommandId: "c-" + op, Applied: true, Version: 2,
			State: &apiv1.Event{EventId: "ev", ChannelId: "ch", EventState: "ONGOING", Version: 2}})
		if err != nil {
			t.Fatal(err)
		}
		return env, data
	}
	env, data := event("op-1")
	j := bus.NewJournal(js, log)
	t.Cleanup(j.Close)
	if err := j.Write(t.Context(), bus.DoneRecord(env, "update", "c-op-1", "", now, now, &busv1.Outcome{HttpStatus: 200})); err != nil {
		t.Fatal(err)
	}
	m := &fakeMsg{data: data, delivered: 2}
	h.Handle(t.Context(), m)
	_, control := event("op-2")
	first := &fakeMsg{data: control, delivered: 1}
	h.Handle(t.Context(), first)
	if m.settled != "ack" || first.settled != "ack" {
		t.Fatalf("settled %q and %q, want both acked", m.settled, first.settled)
	}
	inbox, err := js.Stream(t.Context(), bus.StreamInbox)
	if err != nil {
		t.Fatal(err)
	}
	info, err := inbox.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("the inbox holds %d items, want only the control op's", info.State.Msgs)
	}
	got := map[string]bool{}
	for range 2 {
		msg, err := announced.NextMsgWithContext(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		rec := &busv1.OpRecord{}
		if err := proto.Unmarshal(msg.Data, rec); err != nil {
			t.Fatal(err)
		}
		got[rec.GetOpId()+"/"+rec.GetCommandId()] = rec.GetOutcome().GetHttpStatus() == 200
	}
	if !got["op-1/c-op-1"] || !got["op-2/c-op-2"] {
		t.Fatalf("announced %v, want both ops' 200", got)
	}
}
