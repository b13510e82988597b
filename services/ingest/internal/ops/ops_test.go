package ops

import (
	"errors"
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
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// With no lifecycle running, an op times out; its repeat publishes the command again. Both
// copies carry the op record's command id as their message id, so the broker keeps one.
func TestRepeatedCommandCollapsesOnTheCommandID(t *testing.T) {
	s, _, js := newSubmitter(t, 50*time.Millisecond)

	op := Op{Route: "create", ChannelID: "ch1", OpID: "op-1", EventID: NewEventID("ch1", "op-1", true),
		Fingerprint: "fp", Fields: &apiv1.EventFields{Title: proto.String("deploy")}}
	for i := range 2 {
		_, err := s.Submit(t.Context(), op)
		if e, ok := errors.AsType[*apierr.Error](err); !ok || e.Code != "dispatch_timeout" {
			t.Fatalf("submit %d: got %v, want dispatch_timeout", i, err)
		}
	}

	entry, err := s.kv.Get(t.Context(), bus.OpKey(op.ChannelID, op.OpID))
	if err != nil {
		t.Fatal(err)
	}
	rec := &busv1.OpRecord{}
	if err := proto.Unmarshal(entry.Value(), rec); err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("commands stream holds %d messages, want 1", info.State.Msgs)
	}
	msg, err := stream.GetMsg(t.Context(), info.State.FirstSeq)
	if err != nil {
		t.Fatal(err)
	}
	if got := msg.Header.Get(nats.MsgIdHdr); got != rec.GetCommandId() || len(got) != 32 {
		t.Fatalf("message id %q, want the record's command id %q", got, rec.GetCommandId())
	}
}

// A repeat of an op lifecycle gave up on (500 internal_error) publishes its command again,
// under a message id of its own, and answers with the new outcome.
func TestRepeatRetriesAnOpGivenUpOn(t *testing.T) {
	s, nc, _ := newSubmitter(t, 10*time.Second)

	op := Op{Route: "update", ChannelID: "ch1", OpID: "op-2", EventID: "ev1", Fingerprint: "fp",
		Fields: &apiv1.EventFields{Status: "running"}}
	env := &busv1.Envelope{ChannelId: op.ChannelID, OpId: op.OpID, EventId: op.EventID}
	gaveUp := bus.DoneRecord(env, op.Route, "c0ffee", op.Fingerprint, 1, 2,
		&busv1.Outcome{HttpStatus: 500, ErrorCode: bus.CodeGaveUp, Error: "could not be applied"})
	putRecord(t, s, gaveUp)

	// Stand in for lifecycle and dispatch: answer the republished command with a 200.
	cmds := make(chan *nats.Msg, 1)
	sub, err := nc.ChanSubscribe(bus.CommandSubject(op.ChannelID, op.EventID), cmds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	got := make(chan *nats.Msg, 1)
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		select {
		case m := <-cmds:
			got <- m
			done := bus.DoneRecord(env, op.Route, "c0ffee", op.Fingerprint, 1, 3,
				&busv1.Outcome{HttpStatus: 200, Result: &apiv1.EventOpResult{EventId: op.EventID, Accepted: true}})
			putRecord(t, s, done)
		case <-t.Context().Done():
		}
	}()
	t.Cleanup(func() { <-answered })

	out, err := s.Submit(t.Context(), op)
	if err != nil {
		t.Fatal(err)
	}
	if out.GetHttpStatus() != 200 || !out.GetResult().GetAccepted() {
		t.Fatalf("outcome %v, want the retried op's 200", out)
	}
	<-answered // the new outcome came, so the command was published and answered
	var m *nats.Msg
	select {
	case m = <-got:
	default:
		t.Fatal("no command was published")
	}
	if m.Header.Get(nats.MsgIdHdr) != "c0ffee.2" || m.Header.Get(bus.HeaderRedrive) == "" {
		t.Fatalf("republished command headers %v, want message id c0ffee.2 and the redrive header", m.Header)
	}
}

// newSubmitter runs a Submitter on a fresh JetStream server; no lifecycle or dispatch runs.
func newSubmitter(t *testing.T, dispatchWait time.Duration) (*Submitter, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	_, nc, js := bustest.Provisioned(t)
	s, err := New(t.Context(), nc, js, Config{DispatchWait: dispatchWait, RetryBudget: 5 * time.Second},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, nc, js
}

func putRecord(t *testing.T, s *Submitter, rec *busv1.OpRecord) {
	t.Helper()
	data, err := proto.Marshal(rec)
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := s.kv.Put(t.Context(), bus.OpKey(rec.GetChannelId(), rec.GetOpId()), data); err != nil {
		t.Error(err)
	}
}
