package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Msg is one stored message read back from a stream.
type Msg struct {
	Subject string
	Seq     uint64
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// ErrNotFound reports that no message matched a read.
var ErrNotFound = errors.New("no message")

// LastMsg reads the last message on subject from the stream's leader, so it sees every write
// acknowledged before the call (direct gets may be answered by a lagging replica). It is how
// lifecycle loads an event's head and how reads of one event stay read-after-write.
func LastMsg(ctx context.Context, nc *nats.Conn, stream, subject string) (*Msg, error) {
	return leaderGet(ctx, nc, stream, msgGetRequest{LastFor: subject})
}

// DirectLastMsg reads the last message on subject with a direct get: no JSON, one round trip,
// but any replica may answer. On an R1 stream the only replica is the leader, so it is as
// current as LastMsg; on replicated streams use LastMsg where a write must be seen.
func DirectLastMsg(ctx context.Context, nc *nats.Conn, stream, subject string) (*Msg, error) {
	resp, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream+"."+subject, nil)
	if err != nil {
		return nil, fmt.Errorf("direct get last %s: %w", subject, err)
	}
	switch status := resp.Header.Get("Status"); status {
	case "":
	case "404":
		return nil, ErrNotFound
	default:
		return nil, fmt.Errorf("direct get last %s: %w", subject, statusError(status, resp.Header.Get("Description")))
	}
	ts, _ := time.Parse(time.RFC3339Nano, resp.Header.Get("Nats-Time-Stamp"))
	return &Msg{Subject: resp.Header.Get("Nats-Subject"), Seq: headerUint(resp.Header, "Nats-Sequence"), Time: ts,
		Header: resp.Header, Data: resp.Data}, nil
}

// LeaderRange calls fn for up to limit messages on subject from sequence from on, in stream
// order, read one by one from the stream's leader: slower than Range, but it never returns a
// message the leader has already deleted.
func LeaderRange(ctx context.Context, nc *nats.Conn, stream, subject string, from uint64, limit int, fn func(*Msg) error) error {
	seq := max(from, 1)
	for n := 0; limit <= 0 || n < limit; n++ {
		m, err := leaderGet(ctx, nc, stream, msgGetRequest{Seq: seq, NextFor: subject})
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
		seq = m.Seq + 1
	}
	return nil
}

// FirstSeq is the sequence of the oldest message a stream still holds (older ones expired).
func FirstSeq(ctx context.Context, nc *nats.Conn, stream string) (uint64, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	return st.CachedInfo().State.FirstSeq, nil
}

// DirectNext reads the first message on subject at sequence from or later with a direct get:
// one round trip without JSON, but any replica may answer, so it is only as current as the
// leader on an R1 stream (see DirectLastMsg).
func DirectNext(ctx context.Context, nc *nats.Conn, stream, subject string, from uint64) (*Msg, error) {
	body, err := json.Marshal(directRequest{Seq: max(from, 1), NextFor: subject})
	if err != nil {
		return nil, err
	}
	resp, err := nc.RequestWithContext(ctx, "$JS.API.DIRECT.GET."+stream, body)
	if err != nil {
		return nil, fmt.Errorf("direct get next %s: %w", subject, err)
	}
	switch status := resp.Header.Get("Status"); status {
	case "":
	case "404":
		return nil, ErrNotFound
	default:
		return nil, fmt.Errorf("direct get next %s: %w", subject, statusError(status, resp.Header.Get("Description")))
	}
	ts, _ := time.Parse(time.RFC3339Nano, resp.Header.Get("Nats-Time-Stamp"))
	return &Msg{Subject: resp.Header.Get("Nats-Subject"), Seq: headerUint(resp.Header, "Nats-Sequence"), Time: ts,
		Header: resp.Header, Data: resp.Data}, nil
}

// LeaderMsg reads the message at sequence seq from the stream's leader.
func LeaderMsg(ctx context.Context, nc *nats.Conn, stream string, seq uint64) (*Msg, error) {
	return leaderGet(ctx, nc, stream, msgGetRequest{Seq: seq})
}

// LeaderNext reads the first message on subject at sequence from or later, from the stream's
// leader.
func LeaderNext(ctx context.Context, nc *nats.Conn, stream, subject string, from uint64) (*Msg, error) {
	return leaderGet(ctx, nc, stream, msgGetRequest{Seq: max(from, 1), NextFor: subject})
}

type msgGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	// StartTime with NextFor: the first message on the subject stored at or after it (the
	// server binary-searches its timestamps).
	StartTime *time.Time `json:"start_time,omitempty"`
}

// leaderGetWait bounds one leader get when the caller's context has no deadline: a request
// that reached a leader stepping down is never answered. (The services' calls run under
// Retry, whose attempts are shorter.)
const leaderGetWait = 5 * time.Second

// leaderGet is one $JS.API.STREAM.MSG.GET request (answered by the stream leader).
func leaderGet(ctx context.Context, nc *nats.Conn, stream string, req msgGetRequest) (*Msg, error) {
	what := req.LastFor + req.NextFor
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, leaderGetWait)
		defer cancel()
	}
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, body)
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", what, err)
	}
	var r struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("get %s: decode: %w", what, err)
	}
	if r.Error != nil {
		if r.Error.Code == 404 {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("get %s: %w", what, &jetstream.APIError{Code: r.Error.Code, ErrorCode: jetstream.ErrorCode(r.Error.ErrCode),
			Description: r.Error.Description})
	}
	if r.Message == nil {
		return nil, fmt.Errorf("get %s: empty response", what)
	}
	m := &Msg{Subject: r.Message.Subject, Seq: r.Message.Seq, Time: r.Message.Time, Data: r.Message.Data}
	if len(r.Message.Header) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			return nil, fmt.Errorf("get %s: headers: %w", what, err)
		}
	}
	return m, nil
}

// History calls fn for every message on subject in stream order, starting at sequence from.
// It uses batched direct gets (no consumer is created), so a replica may answer.
func History(ctx context.Context, nc *nats.Conn, stream, subject string, from uint64, fn func(*Msg) error) error {
	return directRange(ctx, nc, stream, subject, from, 0, fn)
}

// directRange is History stopped after limit messages (0: no limit).
func directRange(ctx context.Context, nc *nats.Conn, stream, subject string, from uint64, limit int, fn func(*Msg) error) error {
	const batch = 256
	seq := max(from, 1)
	left := limit
	for {
		n := batch
		if limit > 0 {
			n = min(batch, left)
		}
		req := directRequest{Seq: seq, NextFor: subject, Batch: n}
		got := 0
		eob, err := directGet(ctx, nc, stream, req, func(m *Msg) error {
			got++
			return fn(m)
		})
		if err != nil || eob.numPending == 0 || eob.lastSeq == 0 {
			return err
		}
		if limit > 0 {
			if left -= got; left <= 0 {
				return nil
			}
		}
		seq = eob.lastSeq + 1
	}
}

// LastPerSubject calls fn with the last message of every subject matching filter (which may
// hold wildcards). The server answers at most 1024 subjects per request; beyond that the
// matching subjects are listed and read in chunks.
func LastPerSubject(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, stream, filter string, fn func(*Msg) error) error {
	err := lastPerSubject(ctx, nc, stream, []string{filter}, fn)
	if !errors.Is(err, errTooManyResults) {
		return err
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return fmt.Errorf("list subjects of %s: %w", stream, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return fmt.Errorf("list subjects of %s: %w", stream, err)
	}
	subjects := make([]string, 0, len(info.State.Subjects))
	for s := range info.State.Subjects {
		subjects = append(subjects, s)
	}
	const chunk = 1000
	for len(subjects) > 0 {
		n := min(chunk, len(subjects))
		if err := lastPerSubject(ctx, nc, stream, subjects[:n], fn); err != nil {
			return err
		}
		subjects = subjects[n:]
	}
	return nil
}

func lastPerSubject(ctx context.Context, nc *nats.Conn, stream string, filters []string, fn func(*Msg) error) error {
	req := directRequest{MultiLastFor: filters}
	for {
		eob, err := directGet(ctx, nc, stream, req, fn)
		if err != nil || eob.numPending == 0 || eob.lastSeq == 0 {
			return err
		}
		req.Seq = eob.lastSeq + 1
		req.UpToSeq = eob.upToSeq
	}
}

type directRequest struct {
	Seq          uint64   `json:"seq,omitempty"`
	NextFor      string   `json:"next_by_subj,omitempty"`
	Batch        int      `json:"batch,omitempty"`
	MultiLastFor []string `json:"multi_last,omitempty"`
	UpToSeq      uint64   `json:"up_to_seq,omitempty"`
}

type endOfBatch struct {
	numPending, lastSeq, upToSeq uint64
}

var errTooManyResults = errors.New("too many results")

// directGet sends one batched direct get and reads its replies up to the end-of-batch marker.
func directGet(ctx context.Context, nc *nats.Conn, stream string, r directRequest, fn func(*Msg) error) (endOfBatch, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return endOfBatch{}, err
	}
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return endOfBatch{}, fmt.Errorf("direct get %s: %w", stream, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest("$JS.API.DIRECT.GET."+stream, inbox, body); err != nil {
		return endOfBatch{}, fmt.Errorf("direct get %s: %w", stream, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return endOfBatch{}, fmt.Errorf("direct get %s: %w", stream, err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "204":
			return endOfBatch{
				numPending: headerUint(m.Header, "Nats-Num-Pending"),
				lastSeq:    headerUint(m.Header, "Nats-Last-Sequence"),
				upToSeq:    headerUint(m.Header, "Nats-UpTo-Sequence"),
			}, nil
		case "404":
			return endOfBatch{}, nil
		case "413":
			return endOfBatch{}, errTooManyResults
		default:
			return endOfBatch{}, fmt.Errorf("direct get %s: %w", stream, statusError(status, m.Header.Get("Description")))
		}
		seq := headerUint(m.Header, "Nats-Sequence")
		ts, _ := time.Parse(time.RFC3339Nano, m.Header.Get("Nats-Time-Stamp"))
		if err := fn(&Msg{Subject: m.Header.Get("Nats-Subject"), Seq: seq, Time: ts, Header: m.Header, Data: m.Data}); err != nil {
			return endOfBatch{}, err
		}
	}
}

func headerUint(h nats.Header, key string) uint64 {
	v, _ := strconv.ParseUint(h.Get(key), 10, 64)
	return v
}

// statusError is the error of a direct get answered with a status other than success or not
// found: a *jetstream.APIError carrying it, so that Transient recognises a broker that is away
// (503) as it does for the client library's own calls.
func statusError(status, description string) error {
	code, err := strconv.Atoi(status)
	if err != nil {
		return fmt.Errorf("status %q %s", status, description)
	}
	return &jetstream.APIError{Code: code, Description: description}
}
