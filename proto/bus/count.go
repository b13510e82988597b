package bus

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// countPastEnd is the page offset CountSubjects asks for: past any real subject count, so the
// answer carries the total and an empty page instead of every subject's name.
const countPastEnd = 1 << 30

// CountSubjects returns how many subjects of stream that match filter hold at least one
// message (a KV key with a live value or a marker). It is one stream-info request answered by
// the stream leader: no consumer is made, and the reply is small whatever the count, because
// it asks for a page past the end of the subject list (the server still reports the total).
// The server's cost grows with the number of matching subjects.
func CountSubjects(ctx context.Context, nc *nats.Conn, stream, filter string) (int, error) {
	body, err := json.Marshal(struct {
		Filter string `json:"subjects_filter"`
		Offset int    `json:"offset"`
	}{filter, countPastEnd})
	if err != nil {
		return 0, err
	}
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.INFO."+stream, body)
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", filter, err)
	}
	var r struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Total int `json:"total"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return 0, fmt.Errorf("count %s: decode: %w", filter, err)
	}
	if r.Error != nil {
		return 0, fmt.Errorf("count %s: %w", filter, &jetstream.APIError{Code: r.Error.Code,
			ErrorCode: jetstream.ErrorCode(r.Error.ErrCode), Description: r.Error.Description})
	}
	return r.Total, nil
}
