package lifecycle_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/bus/bustest"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/lifecycle"
)

const ch = "06J0FZG1Y8XGG14VTQ4Y3G10MR"

var quiet = slog.New(slog.DiscardHandler)

// startInstance runs one lifecycle instance on its own connection until the test ends.
func startInstance(t *testing.T, url string) {
	t.Helper()
	startInstanceWith(t, url, lifecycle.Config{Workers: 8})
}

// startInstanceWith runs one lifecycle instance with cfg until the test ends or the returned
// stop is called.
func startInstanceWith(t *testing.T, url string, cfg lifecycle.Config) (stop func()) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- lifecycle.Run(ctx, cfg, lifecycle.Deps{NC: nc, Logger: quiet})
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("lifecycle.Run: %v", err)
			}
			nc.Close()
		})
	}
	t.Cleanup(stop)
	return stop
}

func command(route, eventID, opID string, eventTime int64) *busv1.EventCommand {
	return &busv1.EventCommand{
		Envelope:    &busv1.Envelope{Id: bus.CommandMsgID(ch, opID, "cmd-"+opID), ChannelId: ch, EventId: eventID, OpId: opID, SchemaVersion: 1},
		Route:       route,
		CommandId:   "cmd-" + opID,
		Fingerprint: "fp-" + opID,
		Fields: &apiv1.EventFields{Title: proto.String("t"), Status: "s-" + opID, Message: "m", Severity: "normal",
			EventTime: eventTime},
	}
}

// publish stores a command; again publishes it without its message id, as a copy the
// broker does not collapse (a redelivery, or a command in the stream twice).
func publish(t *testing.T, js jetstream.JetStream, c *busv1.EventCommand, again bool) {
	t.Helper()
	data, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(bus.CommandSubject(ch, c.GetEnvelope().GetEventId()))
	msg.Data = data
	opts := []jetstream.PublishOpt{}
	if !again {
		opts = append(opts, jetstream.WithMsgID(bus.DedupeID(c.GetCommandId(), c.GetEnvelope().GetId())))
	}
	if _, err := js.PublishMsg(t.Context(), msg, opts...); err != nil {
		t.Fatal(err)
	}
}

// history returns the decoded log of one event.
func history(t *testing.T, nc *nats.Conn, eventID string) []*busv1.EventRecorded {
	t.Helper()
	var out []*busv1.EventRecorded
	err := bus.History(t.Context(), nc, bus.StreamEvents, bus.EventSubject(ch, eventID), 1, func(m *bus.Msg) error {
		rec := &busv1.EventRecorded{}
		if err := proto.Unmarshal(m.Data, rec); err != nil {
			return err
		}
		out = append(out, rec)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func opsBucket(t *testing.T, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), bus.BucketOps)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// published is an op outcome lifecycle published for the waiting request.
type published struct {
	rec      *busv1.OpRecord
	recorded bool
}

// outcomes collects the op outcomes published on the bus from now on.
type outcomes struct {
	mu  sync.Mutex
	got []published
}

func watchOutcomes(t *testing.T, nc *nats.Conn) *outcomes {
	t.Helper()
	o := &outcomes{}
	sub, err := nc.Subscribe(bus.OutcomeSubjects, func(m *nats.Msg) {
		rec := &busv1.OpRecord{}
		if err := proto.Unmarshal(m.Data, rec); err != nil {
			t.Error(err)
			return
		}
		o.mu.Lock()
		o.got = append(o.got, published{rec, m.Header.Get(bus.HeaderRecorded) != ""})
		o.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return o
}

// of returns the outcomes published for opID, in order.
func (o *outcomes) of(opID string) []published {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []published
	for _, p := range o.got {
		if p.rec.GetOpId() == opID {
			out = append(out, p)
		}
	}
	return out
}

// TestTwoInstancesNeverCorruptAnEvent runs two lifecycle instances on one command stream and
// throws many concurrent updates of few events at them: every event's history must hold each
// op exactly once, with versions 1..n without gaps, each entry's state the fold of the ones
// before.
func TestTwoInstancesNeverCorruptAnEvent(t *testing.T) {
	t.Parallel()
	twoInstancesNeverCorruptAnEvent(t, lifecycle.Config{Workers: 8})
}

// TestTwoInstancesWithHeadCachesNeverCorruptAnEvent: with remembered heads, each instance's
// head of an event goes stale whenever the other appends to it; the sequence check of the
// append must catch every one.
func TestTwoInstancesWithHeadCachesNeverCorruptAnEvent(t *testing.T) {
	t.Parallel()
	twoInstancesNeverCorruptAnEvent(t, lifecycle.Config{Workers: 8, CacheHeads: true})
}

func twoInstancesNeverCorruptAnEvent(t *testing.T, cfg lifecycle.Config) {
	s, nc, js := bustest.Provisioned(t)
	startInstanceWith(t, s.ClientURL(), cfg)
	startInstanceWith(t, s.ClientURL(), cfg)

	const events, updates = 4, 60
	for e := range events {
		publish(t, js, command("create", fmt.Sprint("ev", e), fmt.Sprintf("c%d", e), 1000), false)
	}
	for e := range events {
		eventually(t, 10*time.Second, "creates", func() bool { return len(history(t, nc, fmt.Sprint("ev", e))) == 1 })
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range updates / 4 {
				for e := range events {
					op := fmt.Sprintf("u%d-%d-%d", e, w, i)
					// Increasing event_time per publisher; across publishers some are late.
					publish(t, js, command("update", fmt.Sprint("ev", e), op, int64(2000+i)), false)
				}
			}
		})
	}
	wg.Wait()
	for e := range events {
		ev := fmt.Sprint("ev", e)
		eventually(t, 30*time.Second, "all updates of "+ev, func() bool { return len(history(t, nc, ev)) == updates+1 })
		h := history(t, nc, ev)
		seen := map[string]bool{}
		version := uint32(0)
		for i, rec := range h {
			op := rec.GetEnvelope().GetOpId()
			if seen[op] {
				t.Fatalf("%s: op %s appears twice", ev, op)
			}
			seen[op] = true
			if rec.GetApplied() {
				version++
				if rec.GetState().GetStatus() != "s-"+op {
					t.Fatalf("%s entry %d: state status %q is not the op's", ev, i, rec.GetState().GetStatus())
				}
			}
			if rec.GetVersion() != version || rec.GetState().GetVersion() != version {
				t.Fatalf("%s entry %d: version %d (state %d), want %d", ev, i, rec.GetVersion(), rec.GetState().GetVersion(), version)
			}
			if i > 0 && rec.GetState().GetEventTime() < h[i-1].GetState().GetEventTime() {
				t.Fatalf("%s entry %d: event_time moved backwards", ev, i)
			}
		}
		if _, err := lifecycle.Replay(h); err != nil {
			t.Fatalf("%s: the stored history does not replay: %v", ev, err)
		}
	}
}

// TestRedeliveredCommandIsNotAppliedTwice republishes an applied command after other ops of
// the same event followed it (as a repeat request does after the duplicate window): the
// history check must recognise it.
func TestRedeliveredCommandIsNotAppliedTwice(t *testing.T) {
	t.Parallel()
	s, nc, js := bustest.Provisioned(t)
	startInstance(t, s.ClientURL())

	publish(t, js, command("create", "ev", "op-create", 1000), false)
	first := command("update", "ev", "op-first", 2000)
	publish(t, js, first, false)
	publish(t, js, command("update", "ev", "op-second", 3000), false)
	eventually(t, 10*time.Second, "three entries", func() bool { return len(history(t, nc, "ev")) == 3 })

	publish(t, js, first, true)                                     // the applied command again, no msg id
	publish(t, js, command("close", "ev", "op-close", 4000), false) // a marker behind it
	eventually(t, 10*time.Second, "the close", func() bool { return len(history(t, nc, "ev")) >= 4 })
	h := history(t, nc, "ev")
	if len(h) != 4 || h[3].GetEnvelope().GetOpId() != "op-close" || h[3].GetVersion() != 4 {
		var ops []string
		for _, r := range h {
			ops = append(ops, r.GetEnvelope().GetOpId())
		}
		t.Fatalf("history = %v, want create, first, second, close", ops)
	}
}

// TestReplayDetectsTampering: a history whose recorded state does not follow from its ops is
// refused, naming the entry.
func TestReplayDetectsTampering(t *testing.T) {
	t.Parallel()
	s, nc, js := bustest.Provisioned(t)
	startInstance(t, s.ClientURL())
	publish(t, js, command("create", "ev", "op-1", 1000), false)
	publish(t, js, command("update", "ev", "op-2", 2000), false)
	eventually(t, 10*time.Second, "two entries", func() bool { return len(history(t, nc, "ev")) == 2 })
	h := history(t, nc, "ev")
	if st, err := lifecycle.Replay(h); err != nil || st.GetVersion() != 2 || st.GetStatus() != "s-op-2" {
		t.Fatalf("replay of a true history: %v, %v", st, err)
	}
	h[1].State.Status = "forged"
	if _, err := lifecycle.Replay(h); err == nil || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("replay of a forged history: %v", err)
	}
	if _, err := lifecycle.Replay(h[1:]); err == nil || !strings.Contains(err.Error(), "event_not_found") {
		t.Fatalf("replay of a history without its create: %v", err)
	}
}

// TestRejectionsBecomeOutcomes checks that a rule violation leaves no trace in the history
// and is recorded as the op's outcome.
func TestRejectionsBecomeOutcomes(t *testing.T) {
	t.Parallel()
	s, nc, js := bustest.Provisioned(t)
	startInstance(t, s.ClientURL())
	out := watchOutcomes(t, nc)
	publish(t, js, command("update", "ghost", "op-ghost", 1000), false)
	publish(t, js, command("create", "ev", "op-c", 1000), false)
	publish(t, js, command("close", "ev", "op-x", 2000), false)
	publish(t, js, command("update", "ev", "op-late", 3000), false)

	eventually(t, 10*time.Second, "outcomes", func() bool {
		return len(out.of("op-ghost")) > 0 && len(out.of("op-late")) > 0
	})
	for op, want := range map[string]string{"op-ghost": "event_not_found", "op-late": "event_closed"} {
		rec := out.of(op)[0].rec
		if rec.GetState() != busv1.OpState_OP_STATE_DONE || rec.GetOutcome().GetErrorCode() != want ||
			rec.GetFingerprint() != "fp-"+op || rec.GetCommandId() != "cmd-"+op {
			t.Fatalf("%s: record %v, want done with %s", op, rec, want)
		}
	}
	if h := history(t, nc, "ghost"); len(h) != 0 {
		t.Fatalf("rejected op left %d history entries", len(h))
	}
	if h := history(t, nc, "ev"); len(h) != 2 {
		t.Fatalf("ev history has %d entries, want 2 (create, close)", len(h))
	}
}

// TestFoldedCommandsAreTrimmed: commands leave PUSHGO_COMMANDS once folded.
func TestFoldedCommandsAreTrimmed(t *testing.T) {
	t.Parallel()
	s, nc, js := bustest.Provisioned(t)
	startInstanceWith(t, s.ClientURL(), lifecycle.Config{Workers: 2, TrimEvery: 20 * time.Millisecond})

	publish(t, js, command("create", "ev", "op-1", 1000), false)
	publish(t, js, command("update", "ev", "op-2", 2000), false)
	publish(t, js, command("update", "ev", "op-3", 3000), false)
	eventually(t, 10*time.Second, "three entries", func() bool { return len(history(t, nc, "ev")) == 3 })
	stream, err := js.Stream(t.Context(), bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "an empty command stream", func() bool {
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs == 0 && info.State.FirstSeq == 4
	})
}

// TestRecreatedConsumerDoesNotRefoldCommands: folded commands stay in the stream until the
// next trim; a lifecycle consumer created in that time (an operator deleted it) is handed
// them again as first deliveries, and must recognise them instead of applying an update
// twice and recording the create as a 409.
func TestRecreatedConsumerDoesNotRefoldCommands(t *testing.T) {
	t.Parallel()
	s, nc, js := bustest.Provisioned(t)
	out := watchOutcomes(t, nc)
	never := lifecycle.Config{Workers: 2, TrimEvery: time.Hour}
	stop := startInstanceWith(t, s.ClientURL(), never)
	publish(t, js, command("create", "ev", "op-create", 1000), false)
	publish(t, js, command("update", "ev", "op-update", 2000), false)
	eventually(t, 10*time.Second, "two entries", func() bool { return len(history(t, nc, "ev")) == 2 })
	stop()

	if err := js.DeleteConsumer(t.Context(), bus.StreamCommands, bus.ConsumerLifecycle); err != nil {
		t.Fatal(err)
	}
	startInstanceWith(t, s.ClientURL(), never)
	publish(t, js, command("close", "ev", "op-close", 3000), false) // a marker behind them
	eventually(t, 10*time.Second, "the close", func() bool { return len(history(t, nc, "ev")) >= 3 })
	h := history(t, nc, "ev")
	var ops []string
	for _, r := range h {
		ops = append(ops, fmt.Sprintf("%s@v%d", r.GetEnvelope().GetOpId(), r.GetVersion()))
	}
	if strings.Join(ops, " ") != "op-create@v1 op-update@v2 op-close@v3" {
		t.Fatalf("history = %v, want each op once", ops)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if p := out.of("op-create"); len(p) != 0 {
		t.Fatalf("the create got a second outcome: %v", p[0].rec.GetOutcome())
	}
}

// TestCommandFailingOnEveryDeliveryIsGivenUp: a command that cannot be handled (here the
// op filter of its event's head is corrupt, so looking its op_id up fails the same way each
// time) is answered 500 internal_error after GiveUpAfter deliveries and terminated, so the
// trim moves past it. Its repeat, once the cause is gone, folds it like any command.
func TestCommandFailingOnEveryDeliveryIsGivenUp(t *testing.T) {
	t.Parallel()
	s, nc, js := bustest.Provisioned(t)
	out := watchOutcomes(t, nc)
	startInstanceWith(t, s.ClientURL(), lifecycle.Config{Workers: 2, TrimEvery: 20 * time.Millisecond,
		GiveUpAfter: 3, RetryDelay: 10 * time.Millisecond})
	publish(t, js, command("create", "ev", "op-0", 1000), false)
	eventually(t, 10*time.Second, "the create", func() bool { return len(history(t, nc, "ev")) == 1 })
	head := history(t, nc, "ev")[0]
	head.OpFilter = []byte("\xffnot an op filter")
	appendRaw(t, js, head, 1)

	cmd := command("update", "ev", "op-1", 2000)
	publish(t, js, cmd, false)
	eventually(t, 10*time.Second, "the op answered internal_error", func() bool {
		p := out.of("op-1")
		return len(p) > 0 && bus.GaveUp(p[0].rec)
	})
	rec := out.of("op-1")[0].rec
	if rec.GetOutcome().GetHttpStatus() != 500 || rec.GetCommandId() != cmd.GetCommandId() || rec.GetFingerprint() != cmd.GetFingerprint() {
		t.Fatalf("outcome %v, want the command's 500 internal_error", rec)
	}
	if h := history(t, nc, "ev"); len(h) != 2 {
		t.Fatalf("a command given up on left %d history entries beside the 2 written", len(h)-2)
	}
	stream, err := js.Stream(t.Context(), bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the command trimmed", func() bool {
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})

	// Repaired (an entry without a filter: the history is read instead), the repeat folds.
	head.OpFilter = nil
	appendRaw(t, js, head, 2)
	publish(t, js, cmd, true)
	eventually(t, 10*time.Second, "the retried update in the history", func() bool { return len(history(t, nc, "ev")) == 4 })
	if h := history(t, nc, "ev"); h[3].GetCommandId() != cmd.GetCommandId() || h[3].GetVersion() != 2 || len(h[3].GetOpFilter()) == 0 {
		t.Fatalf("history %v, want the update at version 2 with an op filter", h)
	}
}

// appendRaw appends rec to its event as the entry after sequence last (an unsigned store).
func appendRaw(t *testing.T, js jetstream.JetStream, rec *busv1.EventRecorded, last uint64) {
	t.Helper()
	data, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(t.Context(), bus.EventSubject(ch, rec.GetEnvelope().GetEventId()), data,
		jetstream.WithExpectLastSequencePerSubject(last)); err != nil {
		t.Fatal(err)
	}
}

// TestRetryThatFailsAgainIsAnsweredAgain: the event's stored head is undecodable, so its
// commands are answered 500 integrity_error (logsign.Verifier.Open fails it even where nothing
// is signed). The retry of such an op fails the same way and must be answered again (the
// retrying request waits for it), not dropped silently.
func TestRetryThatFailsAgainIsAnsweredAgain(t *testing.T) {
	t.Parallel()
	s, nc, js := bustest.Provisioned(t)
	out := watchOutcomes(t, nc)
	startInstanceWith(t, s.ClientURL(), lifecycle.Config{Workers: 2, GiveUpAfter: 2, RetryDelay: 10 * time.Millisecond})
	if _, err := js.Publish(t.Context(), bus.EventSubject(ch, "ev"), []byte("\xff\xff\xff")); err != nil {
		t.Fatal(err)
	}
	cmd := command("update", "ev", "op-1", 1000)
	publish(t, js, cmd, false)
	eventually(t, 10*time.Second, "the op answered integrity_error", func() bool {
		p := out.of("op-1")
		return len(p) == 1 && p[0].rec.GetOutcome().GetErrorCode() == bus.CodeIntegrity
	})

	retry := command("update", "ev", "op-1", 1000)
	retry.CommandId = "cmd-retry"
	publish(t, js, retry, false)
	eventually(t, 10*time.Second, "a second integrity_error outcome", func() bool {
		p := out.of("op-1")
		return len(p) == 2 && p[1].rec.GetCommandId() == "cmd-retry" && bus.GaveUp(p[1].rec)
	})
}

// TestRepeatsAreAnsweredFromTheRecord: a repeat of an applied op (same op_id and body, a new
// request) is not applied again; it is answered with the op's recorded outcome, marked
// recorded: from the outcome journal for a 200, from the op record for a 503. One with another
// body or route is answered op_id_conflict.
func TestRepeatsAreAnsweredFromTheRecord(t *testing.T) {
	t.Parallel()
	s, nc, js := bustest.Provisioned(t)
	out := watchOutcomes(t, nc)
	startInstance(t, s.ClientURL())
	publish(t, js, command("create", "ev", "op-c", 1000), false)
	publish(t, js, command("update", "ev", "op-ok", 2000), false)
	publish(t, js, command("update", "ev", "op-503", 3000), false)
	eventually(t, 10*time.Second, "three entries", func() bool { return len(history(t, nc, "ev")) == 3 })

	// Stand in for dispatch: the 200 goes to the journal, the 503 to the op record.
	env := func(op string) *busv1.Envelope { return &busv1.Envelope{ChannelId: ch, EventId: "ev", OpId: op} }
	j := bus.NewJournal(js, quiet)
	t.Cleanup(j.Close)
	if err := j.Write(t.Context(), bus.DoneRecord(env("op-ok"), "update", "cmd-op-ok", "fp-op-ok", 1, 2,
		&busv1.Outcome{HttpStatus: 200})); err != nil {
		t.Fatal(err)
	}
	failed := bus.DoneRecord(env("op-503"), "update", "cmd-op-503", "fp-op-503", 1, 2,
		&busv1.Outcome{HttpStatus: 503, ErrorCode: "dispatch_partial_failure"})
	data, err := proto.Marshal(failed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opsBucket(t, js).Put(t.Context(), bus.OpKey(ch, "op-503"), data); err != nil {
		t.Fatal(err)
	}

	again := func(route, op, fingerprint string) {
		c := command(route, "ev", op, 4000)
		c.CommandId, c.Fingerprint = "repeat-"+op+"-"+fingerprint, fingerprint
		publish(t, js, c, false)
	}
	again("update", "op-ok", "fp-op-ok")
	again("update", "op-503", "fp-op-503")
	again("update", "op-c", "fp-op-c") // another route than the create's
	again("update", "op-ok", "fp-other")
	eventually(t, 10*time.Second, "four answers", func() bool {
		return len(out.of("op-ok")) == 2 && len(out.of("op-503")) == 1 && len(out.of("op-c")) == 1
	})
	for _, tt := range []struct {
		p        published
		status   uint32
		recorded bool
	}{
		{out.of("op-503")[0], 503, true},
		{out.of("op-c")[0], 409, false},
	} {
		if tt.p.rec.GetOutcome().GetHttpStatus() != tt.status || tt.p.recorded != tt.recorded {
			t.Fatalf("%s answered %v (recorded %v), want %d (recorded %v)", tt.p.rec.GetOpId(), tt.p.rec.GetOutcome(), tt.p.recorded, tt.status, tt.recorded)
		}
	}
	var statuses []string
	for _, p := range out.of("op-ok") {
		statuses = append(statuses, fmt.Sprintf("%s:%d:%v", p.rec.GetFingerprint(), p.rec.GetOutcome().GetHttpStatus(), p.recorded))
	}
	slices.Sort(statuses)
	if strings.Join(statuses, " ") != "fp-op-ok:200:true fp-other:409:false" {
		t.Fatalf("op-ok answered %v, want its journaled 200 and a conflict", statuses)
	}
	if h := history(t, nc, "ev"); len(h) != 3 {
		t.Fatalf("repeats left %d entries, want the 3 of the first requests", len(h))
	}
}

// TestOldOpsAreFoundBeyondTheRecentOnes: the head's filter keeps the last ops exactly and
// older ones in a Bloom filter; a repeat of an op far back is still recognised (from the
// history the filter points into), and so is one of an event whose entries predate filters.
func TestOldOpsAreFoundBeyondTheRecentOnes(t *testing.T) {
	t.Parallel()
	s, nc, js := bustest.Provisioned(t)
	startInstance(t, s.ClientURL())
	publish(t, js, command("create", "ev", "op-c", 1000), false)
	const n = 80
	for i := range n {
		publish(t, js, command("update", "ev", fmt.Sprint("op-", i), int64(2000+i)), false)
	}
	eventually(t, 20*time.Second, "every update", func() bool { return len(history(t, nc, "ev")) == n+1 })

	// An event written before filters existed: entries without one.
	legacy := history(t, nc, "ev")[:3]
	for i, rec := range legacy {
		rec = proto.CloneOf(rec)
		rec.Envelope.EventId, rec.OpFilter = "old", nil
		last := uint64(0)
		if i > 0 {
			last = lastSeq(t, nc, "old")
		}
		appendRaw(t, js, rec, last)
	}

	for _, op := range []string{"op-c", "op-0", "op-5", fmt.Sprint("op-", n-1)} {
		c := command("update", "ev", op, 9000)
		c.CommandId = "repeat-" + op
		publish(t, js, c, false)
	}
	c := command("update", "old", "op-0", 9000)
	c.CommandId = "repeat-old"
	publish(t, js, c, false)
	publish(t, js, command("update", "old", "op-new", 9000), false) // a marker behind it
	publish(t, js, command("close", "ev", "op-close", 9000), false)
	eventually(t, 10*time.Second, "the markers", func() bool {
		return len(history(t, nc, "ev")) >= n+2 && len(history(t, nc, "old")) >= 4
	})
	if h := history(t, nc, "ev"); len(h) != n+2 || h[n+1].GetEnvelope().GetOpId() != "op-close" {
		t.Fatalf("ev has %d entries, want %d: a repeat was applied again", len(h), n+2)
	}
	if h := history(t, nc, "old"); len(h) != 4 || h[3].GetEnvelope().GetOpId() != "op-new" || len(h[3].GetOpFilter()) == 0 {
		t.Fatalf("old has %d entries, want 4 ending with op-new and a filter", len(h))
	}
}

func lastSeq(t *testing.T, nc *nats.Conn, eventID string) uint64 {
	t.Helper()
	m, err := bus.LastMsg(t.Context(), nc, bus.StreamEvents, bus.EventSubject(ch, eventID))
	if err != nil {
		t.Fatal(err)
	}
	return m.Seq
}
