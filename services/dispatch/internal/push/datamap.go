package push

import (
	"encoding/json"
	"strconv"

	"google.golang.org/protobuf/types/known/structpb"

	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// dataMap builds what a device receives for one op: PushGo's string→string data map
// (reference/pushgo-gateway.md §3.1) plus event_version and attrs_state. Times are Unix ms in
// decimal; tags, images, attrs and metadata are JSON strings. As in PushGo, attrs is the op's
// patch as sent (nulls kept) and is left out when the op had none; attrs_state is the event's
// folded attrs after the op. Text fields come from the state after the op, so an update
// without a title still carries the event's title.
func dataMap(rec *busv1.EventRecorded, deliveryID string, sentAt int64) map[string]string {
	env, st, f := rec.GetEnvelope(), rec.GetState(), rec.GetFields()
	ms := func(v int64) string { return strconv.FormatInt(v, 10) }
	m := map[string]string{
		"schema_version":  "1",
		"payload_version": "1",
		"channel_id":      env.GetChannelId(),
		"op_id":           env.GetOpId(),
		"delivery_id":     deliveryID,
		"sent_at":         ms(sentAt),
		"ingested_at":     ms(env.GetRecordedAt()),
		"entity_type":     "event",
		"entity_id":       env.GetEventId(),
		"event_id":        env.GetEventId(),
		"event_state":     st.GetEventState(),
		"event_version":   strconv.FormatUint(uint64(rec.GetVersion()), 10),
		"event_time":      ms(f.GetEventTime()),
		"occurred_at":     ms(f.GetEventTime()),
		"title":           st.GetTitle(),
		"body":            st.GetMessage(),
		"status":          st.GetStatus(),
		"message":         st.GetMessage(),
		"severity":        st.GetSeverity(),
		"started_at":      ms(st.GetStartedAt()),
	}
	if st.GetEndedAt() != 0 {
		m["ended_at"] = ms(st.GetEndedAt())
	}
	if st.GetDescription() != "" {
		m["description"] = st.GetDescription()
	}
	if st.GetThingId() != "" {
		m["thing_id"] = st.GetThingId()
	}
	if f.GetCiphertext() != "" {
		m["ciphertext"] = f.GetCiphertext()
	}
	if len(st.GetTags()) > 0 {
		m["tags"] = jsonString(st.GetTags())
	}
	if len(st.GetImages()) > 0 {
		m["images"] = jsonString(st.GetImages())
	}
	if f.GetAttrs() != nil && len(f.GetAttrs().GetFields()) > 0 {
		m["attrs"] = structJSON(f.GetAttrs())
	}
	m["attrs_state"] = structJSON(st.GetAttrs())
	if f.GetMetadata() != nil && len(f.GetMetadata().GetFields()) > 0 {
		m["metadata"] = structJSON(f.GetMetadata())
	}
	return m
}

func structJSON(s *structpb.Struct) string {
	if s == nil {
		return "{}"
	}
	return jsonString(s.AsMap())
}

// jsonString encodes v, whose values come from decoded JSON and so always encode.
func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "null"
	}
	return string(b)
}
