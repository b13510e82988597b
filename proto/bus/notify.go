package bus

import (
	"fmt"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// Message headers beyond JetStream's own.

// HeaderRecorded marks an outcome published on OutcomeSubject that was read back for a repeat
// of the op (from its 503 record or the outcome journal) rather than decided for this request:
// ingest redrives a recorded 503 (DESIGN.md §4) and returns any other as it is.
const HeaderRecorded = "Pushgo-Recorded"

// PublishOutcome announces rec, an op's final outcome, on its OutcomeSubject for the ingest
// request waiting for it, without its receipts (the answer is in the outcome). recorded sets
// HeaderRecorded. Call it once the outcome is on record, or for one nothing records
// (rejections).
func PublishOutcome(nc *nats.Conn, rec *busv1.OpRecord, recorded bool) error {
	if len(rec.GetReceipts()) > 0 {
		rec = proto.CloneOf(rec)
		rec.Receipts = nil
	}
	data, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(OutcomeSubject(rec.GetChannelId(), rec.GetOpId()))
	msg.Data = data
	if recorded {
		msg.Header.Set(HeaderRecorded, "1")
	}
	if err := nc.PublishMsg(msg); err != nil {
		return fmt.Errorf("publish the outcome of %s: %w", OpKey(rec.GetChannelId(), rec.GetOpId()), err)
	}
	return nil
}
