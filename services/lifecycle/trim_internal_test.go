package lifecycle

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
)

// TestTrimRemovesOnlyAcknowledgedCommands: a trim removes the commands up to the consumer's
// ack floor and keeps one that is delivered but not acknowledged, and everything after it.
func TestTrimRemovesOnlyAcknowledgedCommands(t *testing.T) {
	t.Parallel()
	_, _, js := bustest.Provisioned(t)
	ctx := t.Context()
	cons, err := commandsConsumer(ctx, js, bus.StreamCommands, jetstream.ConsumerConfig{Durable: bus.ConsumerLifecycle, AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		if _, err := js.Publish(ctx, bus.CommandSubject("ch", "ev"), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := cons.FetchNoWait(3)
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for m := range batch.Messages() {
		got = append(got, m)
	}
	if len(got) != 3 {
		t.Fatalf("fetched %d commands, want 3", len(got))
	}
	for _, i := range []int{0, 2} { // seq 2 stays unacknowledged
		if err := got[i].DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stream, err := js.Stream(ctx, bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	check := func(trimmed, wantFloor, wantFirst, wantMsgs uint64) uint64 {
		t.Helper()
		floor, err := trimOnce(ctx, js, bus.StreamCommands, cons, trimmed)
		if err != nil {
			t.Fatal(err)
		}
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if floor != wantFloor || info.State.FirstSeq != wantFirst || info.State.Msgs != wantMsgs {
			t.Fatalf("after trim: floor %d, first seq %d, %d msgs; want %d, %d, %d",
				floor, info.State.FirstSeq, info.State.Msgs, wantFloor, wantFirst, wantMsgs)
		}
		return floor
	}
	trimmed := check(0, 1, 2, 3)
	if err := got[1].DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	check(trimmed, 3, 4, 1)

}
