package ops

import (
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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
	_, nc, js := bustest.Provisioned(t)
	s, err := New(t.Context(), nc, js, Config{DispatchWait: 50 * time.Millisecond, RetryBudget: 5 * time.Second},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })

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
