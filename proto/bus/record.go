package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

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

// CodeGaveUp is the error code of an op whose command failed the same non-transient way on
// every delivery, so lifecycle stopped retrying it: 500 internal_error. Unlike other outcomes
// it is not final: a repeat of the op retries the command (GaveUp).
const CodeGaveUp = "internal_error"

// CodeIntegrity is the error code of an op or a read that met an event log entry failing its
// integrity check (proto/logsign): 500 integrity_error.
const CodeIntegrity = "integrity_error"

// GaveUp reports whether rec is the outcome of a command lifecycle gave up on: internal_error,
// or integrity_error (the event's log head failed its check). Such outcomes are not final: a
// repeat of the op retries the command, which succeeds once the cause is repaired.
func GaveUp(rec *busv1.OpRecord) bool {
	code := rec.GetOutcome().GetErrorCode()
	return rec.GetState() == busv1.OpState_OP_STATE_DONE && (code == CodeGaveUp || code == CodeIntegrity)
}

// RetryDedupeID is the Nats-Msg-Id of a command republished to retry an op that was given up
// on: DedupeID would be swallowed while the first copy is in the duplicate window. Repeats
// retrying the same outcome (same updated_at) still collapse into one command.
func RetryDedupeID(rec *busv1.OpRecord) string {
	return DedupeID(rec.GetCommandId(), rec.GetChannelId()+":"+rec.GetOpId()) + "." + strconv.FormatInt(rec.GetUpdatedAt(), 10)
}

// ErrCorruptRecord reports an op record that cannot be decoded.
var ErrCorruptRecord = errors.New("undecodable op record")

// ReadOpRecord reads the op record of (channelID, opID) from the ops bucket, retrying through
// broker outages for up to budget: nil and no error when there is none, ErrCorruptRecord
// when it cannot be decoded.
func ReadOpRecord(ctx context.Context, ops jetstream.KeyValue, channelID, opID string, budget time.Duration) (*busv1.OpRecord, error) {
	var e jetstream.KeyValueEntry
	err := Retry(ctx, budget, func(ctx context.Context) error {
		var err error
		e, err = ops.Get(ctx, OpKey(channelID, opID))
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get op record: %w", err)
	}
	rec := &busv1.OpRecord{}
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		return nil, fmt.Errorf("%w %s.%s: %w", ErrCorruptRecord, channelID, opID, err)
	}
	return rec, nil
}
