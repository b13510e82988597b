package push

import (
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

func TestDataMap(t *testing.T) {
	t.Parallel()
	patch, _ := structpb.NewStruct(map[string]any{"progress": 0.5, "gone": nil})
	folded, _ := structpb.NewStruct(map[string]any{"progress": 0.5, "service": "api"})
	thing, desc, ended, ct := "db-1", "prod", int64(1713750600000), "opaque"
	rec := &busv1.EventRecorded{
		Envelope: &busv1.Envelope{ChannelId: "C", EventId: "e1", OpId: "op-1", RecordedAt: 1713750000123},
		Applied:  true, Version: 3,
		Fields: &apiv1.EventFields{EventTime: 1713750300000, Attrs: patch, Ciphertext: &ct,
			Metadata: &structpb.Struct{Fields: map[string]*structpb.Value{"run": structpb.NewNumberValue(7)}}},
		State: &apiv1.Event{Title: "deploy", Description: &desc, ThingId: &thing, Status: "done", Message: "finished",
			Severity: "low", Tags: []string{"a"}, Attrs: folded, StartedAt: 1713750000000, EndedAt: &ended, EventState: "CLOSED"},
	}
	want := map[string]string{
		"schema_version": "1", "payload_version": "1", "channel_id": "C", "op_id": "op-1", "delivery_id": "d1",
		"sent_at": "1713750999000", "ingested_at": "1713750000123", "entity_type": "event", "entity_id": "e1",
		"event_id": "e1", "event_state": "CLOSED", "event_version": "3", "event_time": "1713750300000",
		"occurred_at": "1713750300000", "title": "deploy", "body": "finished", "status": "done", "message": "finished",
		"severity": "low", "started_at": "1713750000000", "ended_at": "1713750600000", "description": "prod",
		"thing_id": "db-1", "ciphertext": "opaque", "tags": `["a"]`, "attrs": `{"gone":null,"progress":0.5}`,
		"attrs_state": `{"progress":0.5,"service":"api"}`, "metadata": `{"run":7}`,
	}
	got := dataMap(rec, "d1", 1713750999000)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d keys, want %d: %v", len(got), len(want), got)
	}
	// A record without fields or state (never written by lifecycle) must not crash dispatch.
	if m := dataMap(&busv1.EventRecorded{}, "d", 1); m["entity_type"] != "event" || m["attrs_state"] != "{}" {
		t.Fatalf("empty record: %v", m)
	}
}
