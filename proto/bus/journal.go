package bus

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// Bounds of one journal batch: far below the broker's 1 MB max payload, so that a batch of
// records that each fit is never refused for its size.
const (
	journalBatchRecords = 256
	journalBatchBytes   = 256 << 10
)

// journalRetryBudget is how long a journal write or read retries through a broker outage (a
// leader election takes 4–9 s) before it gives up.
const journalRetryBudget = 10 * time.Second

// ErrJournalClosed is the error of a Write after Close, or pending when Close was called.
var ErrJournalClosed = errors.New("outcome journal closed")

// Journal writes op outcomes to PUSHGO_OUTCOMES by group commit: one writer publishes, and the
// records queued while a publish is in flight go out together in the next one. There is no
// timer: under low load a batch is one record and adds no latency; under load batches grow, so
// durable writes grow with load far slower than ops do (docs/scale.md §2). Safe for concurrent
// use; Close it when done.
type Journal struct {
	js  jetstream.JetStream
	log *slog.Logger

	// ctx ends at Close, which also stops a publish in flight.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	queue  []*journalEntry
	closed bool

	wake    chan struct{} // one pending wake-up of the writer
	stopped chan struct{} // closed when the writer has answered every entry and exited
}

// journalEntry is one queued record, encoded by its Write (in parallel, and so that the caller
// may reuse rec once Write returns, even early).
type journalEntry struct {
	data []byte
	done chan error // buffered: the writer never waits for a Write that gave up
}

// NewJournal starts the journal's writer; log reports batches that failed.
func NewJournal(js jetstream.JetStream, log *slog.Logger) *Journal {
	ctx, cancel := context.WithCancel(context.Background())
	j := &Journal{js: js, log: log, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go j.run()
	return j
}

// Write queues rec and returns once the batch holding it is stored (its PubAck), or the error
// that stopped it (after retrying through a broker outage for 10 s), or ctx's
// error. A record returned early on ctx may still be written. A record too large for a batch is
// written alone; one beyond the broker's max payload fails, so callers keep records small.
func (j *Journal) Write(ctx context.Context, rec *busv1.OpRecord) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := proto.Marshal(rec)
	if err != nil {
		return fmt.Errorf("journal outcome: %w", err)
	}
	e := &journalEntry{data: data, done: make(chan error, 1)}
	j.mu.Lock()
	if j.closed {
		j.mu.Unlock()
		return ErrJournalClosed
	}
	j.queue = append(j.queue, e)
	j.mu.Unlock()
	select {
	case j.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
	select {
	case err := <-e.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Close stops the writer: a publish in flight is abandoned and every pending Write returns
// ErrJournalClosed. It returns once the writer has exited.
func (j *Journal) Close() {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	j.cancel()
	<-j.stopped
}

func (j *Journal) run() {
	defer close(j.stopped)
	for {
		select {
		case <-j.ctx.Done():
			// Close set closed before cancelling, so nothing is queued after this.
			j.mu.Lock()
			rest := j.queue
			j.queue = nil
			j.mu.Unlock()
			for _, e := range rest {
				e.done <- ErrJournalClosed
			}
			return
		case <-j.wake:
		}
		for {
			batch := j.take()
			if len(batch) == 0 {
				break
			}
			err := j.publish(batch)
			for _, e := range batch {
				e.done <- err
			}
		}
	}
}

// take removes the next batch from the queue: the oldest records, up to journalBatchRecords
// and journalBatchBytes, and at least one.
func (j *Journal) take() []*journalEntry {
	j.mu.Lock()
	defer j.mu.Unlock()
	n, size := 0, 0
	for _, e := range j.queue {
		size += protowire.SizeTag(1) + protowire.SizeBytes(len(e.data))
		if n > 0 && (n == journalBatchRecords || size > journalBatchBytes) {
			break
		}
		n++
	}
	batch := slices.Clone(j.queue[:n])
	left := copy(j.queue, j.queue[n:])
	clear(j.queue[left:])
	j.queue = j.queue[:left]
	return batch
}

// publish stores one batch. The records are encoded already, so the batch is assembled as the
// wire form of busv1.OutcomeBatch{Records: …} (field 1, each record length-prefixed), which is
// what proto.Marshal of it produces. The batch's random message id makes a retried publish that
// landed the first time a duplicate, not a second copy.
func (j *Journal) publish(batch []*journalEntry) error {
	size := 0
	for _, e := range batch {
		size += protowire.SizeTag(1) + protowire.SizeBytes(len(e.data))
	}
	data := make([]byte, 0, size)
	for _, e := range batch {
		data = protowire.AppendTag(data, 1, protowire.BytesType)
		data = protowire.AppendBytes(data, e.data)
	}
	id := rand.Text()
	err := Retry(j.ctx, journalRetryBudget, func(ctx context.Context) error {
		_, err := j.js.Publish(ctx, OutcomesSubject, data, jetstream.WithMsgID(id), jetstream.WithExpectStream(StreamOutcomes))
		return err
	})
	if err == nil {
		return nil
	}
	if j.ctx.Err() != nil {
		return ErrJournalClosed
	}
	j.log.Warn("outcome journal write failed", "records", len(batch), "bytes", len(data), "err", err)
	return fmt.Errorf("journal %d outcomes: %w", len(batch), err)
}

// Bounds of LookupOutcome's scan.
const (
	// lookupClockSlack moves the scan's start before since: since comes from another host's
	// clock than the broker's timestamps.
	lookupClockSlack = 5 * time.Second
	// lookupHorizon ends the scan at messages stored this long after since: an op's outcome is
	// journaled within its dispatch budget and retries, far sooner.
	lookupHorizon = 15 * time.Minute
	// lookupMaxMsgs bounds the messages one lookup reads (each a leader get).
	lookupMaxMsgs = 20_000
)

// LookupOutcome finds the journaled outcome of (channelID, opID) with command id commandID (""
// = any) in the journal messages stored at or after since minus a few seconds of clock slack:
// the first match, or nil, nil when there is none. since is a lower bound of when the outcome
// was journaled (the op's log entry's time). The scan stops at the end of the journal, at a
// message stored more than 15 min after since, or after 20,000 messages. Every read goes to the
// stream leader, so an outcome journaled before the call is seen, and each retries through a
// broker outage for 10 s. A batch that does not decode is skipped: it cannot be one this code
// wrote.
func LookupOutcome(ctx context.Context, nc *nats.Conn, channelID, opID, commandID string, since time.Time) (*busv1.OpRecord, error) {
	end := since.Add(lookupHorizon)
	var seq uint64 // 0: the first read finds the start by time
	for range lookupMaxMsgs {
		var m *Msg
		err := Retry(ctx, journalRetryBudget, func(ctx context.Context) error {
			var err error
			if seq == 0 {
				// The leader's STREAM.MSG.GET honours start_time with next_by_subj: one round
				// trip to the start (the journal allows no direct gets). A journal not made
				// yet is a 404 like an empty one: nothing journaled.
				start := since.Add(-lookupClockSlack).UTC()
				m, err = leaderGet(ctx, nc, StreamOutcomes, msgGetRequest{StartTime: &start, NextFor: OutcomesSubject})
			} else {
				m, err = LeaderNext(ctx, nc, StreamOutcomes, OutcomesSubject, seq)
			}
			return err
		})
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("look up the outcome of %s: %w", OpKey(channelID, opID), err)
		}
		if m.Time.After(end) {
			return nil, nil
		}
		var batch busv1.OutcomeBatch
		if proto.Unmarshal(m.Data, &batch) == nil {
			for _, rec := range batch.GetRecords() {
				if rec.GetChannelId() == channelID && rec.GetOpId() == opID && (commandID == "" || rec.GetCommandId() == commandID) {
					return rec, nil
				}
			}
		}
		seq = m.Seq + 1
	}
	return nil, nil
}
