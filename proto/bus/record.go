package bus

import (
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// SchemaVersion is the envelope schema version of messages written by this code.
const SchemaVersion = 1

// DoneRecord is the final op record of an op: what a repeat of the op is answered with until
// the idempotency window ends. lifecycle writes it for rejections, dispatch for accepted ops.
func DoneRecord(env *busv1.Envelope, route, commandID, fingerprint string, createdAt, now int64, out *busv1.Outcome) *busv1.OpRecord {
	return &busv1.OpRecord{
		Route:       route,
		Fingerprint: fingerprint,
		CommandId:   commandID,
		ChannelId:   env.GetChannelId(),
		OpId:        env.GetOpId(),
		EventId:     env.GetEventId(),
		State:       busv1.OpState_OP_STATE_DONE,
		CreatedAt:   createdAt,
		UpdatedAt:   now,
		Outcome:     out,
	}
}
