package audit

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/encoding/protojson"
)

// Line is one exported entry: the fields of /event/history's entries, plus where it is stored
// and what seals it.
type Line struct {
	Seq        uint64          `json:"seq"`
	ChannelID  string          `json:"channel_id"`
	EventID    string          `json:"event_id"`
	Version    uint32          `json:"version"`
	Route      string          `json:"route"`
	OpID       string          `json:"op_id"`
	EventTime  int64           `json:"event_time"`
	RecordedAt int64           `json:"recorded_at"`
	Applied    bool            `json:"applied"`
	Fields     json.RawMessage `json:"fields"`
	State      json.RawMessage `json:"state"`
	PrevSeq    uint64          `json:"prev_seq"`
	PrevHash   string          `json:"prev_hash"`
	KeyID      string          `json:"key_id"`
	Auth       string          `json:"authenticator"`
	// Error is set, and the fields above are empty, for an entry that cannot be decoded.
	Error string `json:"error,omitempty"`
}

var jsonOpts = protojson.MarshalOptions{UseProtoNames: true}

// Export writes every entry f selects to w as JSON Lines, in stream order, and returns how
// many it wrote. It checks nothing (Verify does).
func Export(ctx context.Context, nc *nats.Conn, f Filter, w io.Writer) (int, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	n := 0
	err := each(ctx, nc, f, func(m Msg) error {
		rec, err := decode(m)
		if err != nil {
			n++
			return enc.Encode(Line{Seq: m.Seq, Error: "undecodable entry on " + m.Subject})
		}
		if !f.keeps(rec) {
			return nil
		}
		fields, err := jsonOpts.Marshal(rec.GetFields())
		if err != nil {
			return err
		}
		state, err := jsonOpts.Marshal(rec.GetState())
		if err != nil {
			return err
		}
		env := rec.GetEnvelope()
		n++
		return enc.Encode(Line{
			Seq: m.Seq, ChannelID: env.GetChannelId(), EventID: env.GetEventId(), Version: rec.GetVersion(),
			Route: rec.GetRoute(), OpID: env.GetOpId(), EventTime: rec.GetFields().GetEventTime(), RecordedAt: env.GetRecordedAt(),
			Applied: rec.GetApplied(), Fields: fields, State: state, PrevSeq: rec.GetPrevSeq(),
			PrevHash: hex.EncodeToString(rec.GetPrevHash()), KeyID: env.GetKeyId(),
			Auth: base64.StdEncoding.EncodeToString(rec.GetAuthenticator()),
		})
	})
	if ferr := bw.Flush(); err == nil {
		err = ferr
	}
	return n, err
}
