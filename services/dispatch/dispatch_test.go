package dispatch_test

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
	"pushgo.dev/gateway/services/dispatch"
)

const ch = "06J0FZG1Y8XGG14VTQ4Y3G10MR"

func recorded(op string, applied bool, version uint32) *busv1.EventRecorded {
	thing := "db-1"
	return &busv1.EventRecorded{
		Envelope:    &busv1.Envelope{Id: bus.EventMsgID(ch, op, "cmd-"+op), ChannelId: ch, EventId: "ev", OpId: op, SchemaVersion: 1},
		Route:       "update",
		CommandId:   "cmd-" + op,
		Fingerprint: "fp-" + op,
		Applied:     applied,
		Version:     version,
		State:       &apiv1.Event{EventId: "ev", ChannelId: ch, ThingId: &thing, EventState: "ONGOING", Version: version},
		OpCreatedAt: 42,
	}
}

// TestOutcomes checks that every domain event completes its op: accepted ops and late (not
// applied) ones alike get a 200 with the ids, version and state the caller is answered with,
// published for the waiting request and kept in the outcome journal (not as an op record).
func TestOutcomes(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	published := make(chan *nats.Msg, 8)
	sub, err := nc.ChanSubscribe(bus.OutcomeSubjects, published)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- dispatch.Run(ctx, dispatch.Config{Workers: 4}, dispatch.Deps{NC: nc, Logger: slog.New(slog.DiscardHandler)})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatch.Run: %v", err)
		}
	})
	for _, rec := range []*busv1.EventRecorded{recorded("op-a", true, 2), recorded("op-late", false, 2)} {
		data, err := proto.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(t.Context(), bus.EventSubject(ch, "ev"), data); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := js.KeyValue(t.Context(), bus.BucketOps)
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]bool{"op-a": true, "op-late": false}
	for range applied {
		var m *nats.Msg
		select {
		case m = <-published:
		case <-time.After(10 * time.Second):
			t.Fatal("no outcome published within 10s")
		}
		var rec busv1.OpRecord
		if err := proto.Unmarshal(m.Data, &rec); err != nil {
			t.Fatal(err)
		}
		op := rec.GetOpId()
		journaled, err := bus.LookupOutcome(t.Context(), nc, ch, op, "cmd-"+op, time.Now().Add(-time.Minute))
		if err != nil || journaled == nil || !proto.Equal(journaled.GetOutcome(), rec.GetOutcome()) {
			t.Fatalf("%s: journal holds %v (%v), want the published outcome %v", op, journaled, err, rec.GetOutcome())
		}
		if _, err := kv.Get(t.Context(), bus.OpKey(ch, op)); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("%s: an op record was written for a 200 (%v)", op, err)
		}
		res := rec.GetOutcome().GetResult()
		if rec.GetState() != busv1.OpState_OP_STATE_DONE || rec.GetOutcome().GetHttpStatus() != 200 ||
			rec.GetFingerprint() != "fp-"+op || rec.GetCommandId() != "cmd-"+op || rec.GetCreatedAt() != 42 ||
			res.GetEventId() != "ev" || res.GetOpId() != op || res.GetThingId() != "db-1" || res.GetVersion() != 2 ||
			!res.GetAccepted() || res.GetApplied() != applied[op] || res.GetDelivery() == nil {
			t.Fatalf("%s: record %v", op, &rec)
		}
	}
}

// TestRecordOfALargeChannelFits: an op's record holds one receipt per target, and a channel of
// many thousand targets has more than one broker message holds. The record must still be
// written (else the op is retried forever): delivered receipts are counted instead of kept,
// then failed ones that do not fit, and the outcome still counts every target.
func TestRecordOfALargeChannelFits(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	ctx := t.Context()
	devs, err := js.KeyValue(ctx, bus.BucketDevices)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := js.KeyValue(ctx, bus.BucketSubs)
	if err != nil {
		t.Fatal(err)
	}
	const private, failing = 40, 20 // apns has no provider credentials yet: those fail at once
	for i := range private + failing {
		key := fmt.Sprintf("%032x", i)
		route := "private"
		if i >= private {
			route = "apns"
		}
		for kv, rec := range map[jetstream.KeyValue]proto.Message{
			devs: &busv1.DeviceRecord{DeviceKey: key, Platform: "ios", ChannelType: route},
			subs: &busv1.SubscriptionRecord{ChannelId: ch, DeviceKey: key},
		} {
			data, err := proto.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			k := key
			if kv == subs {
				k = bus.SubKey(ch, key)
			}
			if _, err := kv.Put(ctx, k, data); err != nil {
				t.Fatal(err)
			}
		}
	}
	const limit = 2048
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- dispatch.Run(runCtx, dispatch.Config{Workers: 2, MaxRecordBytes: limit}, dispatch.Deps{NC: nc, Logger: slog.New(slog.DiscardHandler)})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dispatch.Run: %v", err)
		}
	})
	data, err := proto.Marshal(recorded("op-big", true, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, bus.EventSubject(ch, "ev"), data); err != nil {
		t.Fatal(err)
	}
	ops, err := js.KeyValue(ctx, bus.BucketOps)
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	deadline := time.Now().Add(10 * time.Second)
	for raw == nil {
		e, err := ops.Get(ctx, bus.OpKey(ch, "op-big"))
		switch {
		case err == nil:
			raw = e.Value()
		case !errors.Is(err, jetstream.ErrKeyNotFound) || time.Now().After(deadline):
			t.Fatalf("outcome: %v", err)
		default:
			select {
			case <-time.After(10 * time.Millisecond):
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			}
		}
	}
	var rec busv1.OpRecord
	if err := proto.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	d := rec.GetOutcome().GetResult().GetDelivery()
	if rec.GetOutcome().GetHttpStatus() != 503 || rec.GetOutcome().GetErrorCode() != "dispatch_partial_failure" ||
		d.GetTargets() != private+failing || d.GetDelivered() != private || d.GetFailed() != failing {
		t.Fatalf("outcome %v", rec.GetOutcome())
	}
	if len(raw) > limit {
		t.Fatalf("record is %d bytes, limit %d", len(raw), limit)
	}
	for _, r := range rec.GetReceipts() {
		if r.GetStatus() != busv1.ReceiptStatus_RECEIPT_STATUS_FAILED {
			t.Fatalf("kept a delivered receipt: %v", r)
		}
	}
	if rec.GetDeliveredOmitted() != private || rec.GetFailedOmitted() == 0 ||
		len(rec.GetReceipts())+int(rec.GetFailedOmitted()) != failing || len(rec.GetReceipts()) == 0 {
		t.Fatalf("kept %d failed receipts, omitted %d delivered and %d failed", len(rec.GetReceipts()), rec.GetDeliveredOmitted(), rec.GetFailedOmitted())
	}
}
