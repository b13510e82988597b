package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

func newJournal(t *testing.T, js jetstream.JetStream) *bus.Journal {
	t.Helper()
	j := bus.NewJournal(js, slog.New(slog.DiscardHandler))
	t.Cleanup(j.Close)
	return j
}

func outcomeRecord(channelID, opID, commandID string, status uint32) *busv1.OpRecord {
	return &busv1.OpRecord{ChannelId: channelID, OpId: opID, CommandId: commandID, State: busv1.OpState_OP_STATE_DONE,
		Outcome: &busv1.Outcome{HttpStatus: status}}
}

func lookup(t *testing.T, nc *nats.Conn, channelID, opID, commandID string, since time.Time) *busv1.OpRecord {
	t.Helper()
	rec, err := bus.LookupOutcome(t.Context(), nc, channelID, opID, commandID, since)
	if err != nil {
		t.Fatalf("lookup %s/%s/%s: %v", channelID, opID, commandID, err)
	}
	return rec
}

// Concurrent writes are group-committed: every one is stored, in fewer messages than records,
// and each is found again.
func TestJournalBatchesConcurrentWrites(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	j := newJournal(t, js)
	since := time.Now()

	const writers, perWriter = 50, 20
	errs := make(chan error, writers*perWriter)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				op := fmt.Sprintf("op-%d-%d", w, i)
				errs <- j.Write(t.Context(), outcomeRecord("ch1", op, "cmd-"+op, 200))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("write: %v", err)
		}
	}

	st, err := js.Stream(t.Context(), bus.StreamOutcomes)
	if err != nil {
		t.Fatal(err)
	}
	msgs := st.CachedInfo().State.Msgs
	if msgs == 0 || msgs >= writers*perWriter {
		t.Errorf("%d records in %d journal messages, want fewer messages than records", writers*perWriter, msgs)
	}
	t.Logf("%d records in %d journal messages", writers*perWriter, msgs)

	// Every record is found (looked up in parallel: each lookup scans the journal from its
	// start, one leader get per message).
	lookups := make(chan error, writers)
	for w := range writers {
		go func() {
			lookups <- func() error {
				for i := range perWriter {
					op := fmt.Sprintf("op-%d-%d", w, i)
					rec, err := bus.LookupOutcome(t.Context(), nc, "ch1", op, "cmd-"+op, since)
					if err != nil {
						return err
					}
					if rec.GetOpId() != op || rec.GetCommandId() != "cmd-"+op || rec.GetOutcome().GetHttpStatus() != 200 {
						return fmt.Errorf("lookup %s = %v", op, rec)
					}
				}
				return nil
			}()
		}()
	}
	for range writers {
		if err := <-lookups; err != nil {
			t.Error(err)
		}
	}

	if rec := lookup(t, nc, "ch1", "op-unknown", "", since); rec != nil {
		t.Errorf("lookup of an unknown op = %v, want nil", rec)
	}
	if rec := lookup(t, nc, "ch2", "op-0-0", "", since); rec != nil {
		t.Errorf("lookup of an op of another channel = %v, want nil", rec)
	}
}

// The command id tells apart two outcomes of the same op_id (reused after its record expired).
func TestLookupOutcomeByCommandID(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	j := newJournal(t, js)
	since := time.Now()
	for _, rec := range []*busv1.OpRecord{outcomeRecord("ch1", "op1", "cmd-a", 200), outcomeRecord("ch1", "op1", "cmd-b", 503)} {
		if err := j.Write(t.Context(), rec); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		commandID  string
		wantStatus uint32
	}{
		{"cmd-a", 200},
		{"cmd-b", 503},
		{"", 200}, // the first journaled
	}
	for _, tt := range tests {
		rec := lookup(t, nc, "ch1", "op1", tt.commandID, since)
		if got := rec.GetOutcome().GetHttpStatus(); got != tt.wantStatus {
			t.Errorf("lookup with command %q: status %d, want %d (%v)", tt.commandID, got, tt.wantStatus, rec)
		}
	}
	if rec := lookup(t, nc, "ch1", "op1", "cmd-c", since); rec != nil {
		t.Errorf("lookup with an unknown command id = %v, want nil", rec)
	}
}

// The scan covers the messages stored from since (less the clock slack) to 15 min after it.
func TestLookupOutcomeSince(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	j := newJournal(t, js)
	since := time.Now()
	if err := j.Write(t.Context(), outcomeRecord("ch1", "op1", "cmd-a", 200)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		since time.Time
		found bool
	}{
		{"minutes before", since.Add(-10 * time.Minute), true},
		{"beyond the horizon", since.Add(-time.Hour), false},
		{"at the write", since, true},
		{"within the clock slack", time.Now().Add(2 * time.Second), true},
		{"future", time.Now().Add(time.Hour), false},
		{"zero", time.Time{}, false}, // the write is far more than the 15 min horizon after it
	}
	for _, tt := range tests {
		if rec := lookup(t, nc, "ch1", "op1", "", tt.since); (rec != nil) != tt.found {
			t.Errorf("%s: lookup = %v, want found %v", tt.name, rec, tt.found)
		}
	}
}

// A message on the journal that is no batch is skipped, not an error.
func TestLookupOutcomeSkipsUndecodableBatches(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	j := newJournal(t, js)
	since := time.Now()
	if _, err := js.Publish(t.Context(), bus.OutcomesSubject, []byte{0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := j.Write(t.Context(), outcomeRecord("ch1", "op1", "cmd-a", 200)); err != nil {
		t.Fatal(err)
	}
	if rec := lookup(t, nc, "ch1", "op1", "cmd-a", since); rec.GetCommandId() != "cmd-a" {
		t.Errorf("lookup past an undecodable message = %v, want cmd-a's outcome", rec)
	}
}

// A batch is an OutcomeBatch, and a record larger than a batch's byte bound is still written
// (alone).
func TestJournalWritesALargeRecordAlone(t *testing.T) {
	t.Parallel()
	_, nc, js := bustest.Provisioned(t)
	j := newJournal(t, js)
	since := time.Now()
	big := outcomeRecord("ch1", "op-big", "cmd-big", 200)
	big.Outcome.Error = string(make([]byte, 300<<10))
	if err := j.Write(t.Context(), big); err != nil {
		t.Fatal(err)
	}
	m, err := bus.LeaderNext(t.Context(), nc, bus.StreamOutcomes, bus.OutcomesSubject, 1)
	if err != nil {
		t.Fatal(err)
	}
	var batch busv1.OutcomeBatch
	if err := proto.Unmarshal(m.Data, &batch); err != nil {
		t.Fatalf("journal message is not an OutcomeBatch: %v", err)
	}
	if len(batch.GetRecords()) != 1 || !proto.Equal(batch.GetRecords()[0], big) {
		t.Errorf("batch holds %d records, want the large one alone", len(batch.GetRecords()))
	}
	if rec := lookup(t, nc, "ch1", "op-big", "", since); rec == nil {
		t.Error("large record not found")
	}
}

func TestJournalWriteAfterCloseOrCancel(t *testing.T) {
	t.Parallel()
	_, _, js := bustest.Provisioned(t)
	j := bus.NewJournal(js, slog.New(slog.DiscardHandler))

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := j.Write(ctx, outcomeRecord("ch1", "op1", "cmd-a", 200)); !errors.Is(err, context.Canceled) {
		t.Errorf("write with a cancelled ctx = %v, want %v", err, context.Canceled)
	}

	j.Close()
	if err := j.Write(t.Context(), outcomeRecord("ch1", "op1", "cmd-a", 200)); !errors.Is(err, bus.ErrJournalClosed) {
		t.Errorf("write after close = %v, want %v", err, bus.ErrJournalClosed)
	}
}

// Writes pending when the journal closes get an error rather than hanging: with no stream to
// answer, the first batch is retrying when Close comes.
func TestJournalCloseFailsPendingWrites(t *testing.T) {
	t.Parallel()
	s := bustest.RunServer(t)
	nc := bustest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	published, err := nc.SubscribeSync(bus.OutcomesSubject)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	j := bus.NewJournal(js, slog.New(slog.DiscardHandler))
	errs := make(chan error, 3)
	for i := range cap(errs) {
		go func() { errs <- j.Write(t.Context(), outcomeRecord("ch1", fmt.Sprint("op", i), "cmd", 200)) }()
	}
	if _, err := published.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("no publish attempt: %v", err)
	}
	j.Close()
	for range cap(errs) {
		if err := <-errs; !errors.Is(err, bus.ErrJournalClosed) {
			t.Errorf("pending write at close = %v, want %v", err, bus.ErrJournalClosed)
		}
	}
}

func TestProvisionOutcomesStream(t *testing.T) {
	t.Parallel()
	_, _, js := bustest.Provisioned(t)
	st, err := js.Stream(t.Context(), bus.StreamOutcomes)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.MaxAge != bus.DefaultIdempotencyWindow {
		t.Errorf("max age = %v, want the idempotency window %v", cfg.MaxAge, bus.DefaultIdempotencyWindow)
	}
	if cfg.AllowDirect {
		t.Error("direct gets allowed, want reads from the leader only")
	}
	if cfg.Duplicates != bus.EventsDuplicateWindow {
		t.Errorf("duplicate window = %v, want %v", cfg.Duplicates, bus.EventsDuplicateWindow)
	}
}

// Before any dispatch instance has made the journal, there is nothing journaled: lifecycle
// answering a repeat then waits for dispatch instead of failing.
func TestLookupOutcomeWithoutJournal(t *testing.T) {
	t.Parallel()
	nc := bustest.Connect(t, bustest.RunServer(t))
	rec, err := bus.LookupOutcome(t.Context(), nc, "ch", "op", "", time.Now())
	if rec != nil || err != nil {
		t.Fatalf("lookup without a journal: %v, %v; want nothing and no error", rec, err)
	}
}
