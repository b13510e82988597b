package lifecycle_test

import (
	"context"
	"fmt"
	"log/slog"
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

func publish(t *testing.T, js jetstream.JetStream, c *busv1.EventCommand, redrive bool) {
	t.Helper()
	data, err := proto.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg(bus.CommandSubject(ch, c.GetEnvelope().GetEventId()))
	msg.Data = data
	opts := []jetstream.PublishOpt{}
	if redrive {
		msg.Header.Set(bus.HeaderRedrive, "1")
	} else {
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

func opRecord(t *testing.T, kv jetstream.KeyValue, opID string) *busv1.OpRecord {
	t.Helper()
	e, err := kv.Get(t.Context(), bus.OpKey(ch, opID))
	if err != nil {
		return nil
	}
	rec := &busv1.OpRecord{}
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		t.Fatal(err)
	}
	return rec
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

	publish(t, js, first, true)                                     // redrive of an applied command, no msg id
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
	kv := opsBucket(t, js)
	publish(t, js, command("update", "ghost", "op-ghost", 1000), false)
	publish(t, js, command("create", "ev", "op-c", 1000), false)
	publish(t, js, command("close", "ev", "op-x", 2000), false)
	publish(t, js, command("update", "ev", "op-late", 3000), false)

	eventually(t, 10*time.Second, "outcomes", func() bool {
		return opRecord(t, kv, "op-ghost") != nil && opRecord(t, kv, "op-late") != nil
	})
	for op, want := range map[string]string{"op-ghost": "event_not_found", "op-late": "event_closed"} {
		rec := opRecord(t, kv, op)
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
	kv := opsBucket(t, js)
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
	if rec := opRecord(t, kv, "op-create"); rec != nil {
		t.Fatalf("the create got a second outcome: %v", rec.GetOutcome())
	}
}

// TestCommandFailingOnEveryDeliveryIsGivenUp: a command that cannot be handled (here its op
// record is corrupt, so the check for an earlier outcome fails the same way each time) is
// answered 500 internal_error after GiveUpAfter deliveries and terminated, so the trim moves
// past it. Its repeat, once the cause is gone, folds it like any command.
func TestCommandFailingOnEveryDeliveryIsGivenUp(t *testing.T) {
	t.Parallel()
	s, nc, js := bustest.Provisioned(t)
	kv := opsBucket(t, js)
	startInstanceWith(t, s.ClientURL(), lifecycle.Config{Workers: 2, TrimEvery: 20 * time.Millisecond,
		GiveUpAfter: 3, RetryDelay: 10 * time.Millisecond})

	if _, err := kv.Put(t.Context(), bus.OpKey(ch, "op-1"), []byte("\xffnot an op record")); err != nil {
		t.Fatal(err)
	}
	cmd := command("create", "ev", "op-1", 1000)
	publish(t, js, cmd, true) // a republished command is checked against its op record first
	eventually(t, 10*time.Second, "the op answered internal_error", func() bool {
		e, err := kv.Get(t.Context(), bus.OpKey(ch, "op-1"))
		if err != nil {
			return false
		}
		rec := &busv1.OpRecord{}
		return proto.Unmarshal(e.Value(), rec) == nil && bus.GaveUp(rec)
	})
	rec := opRecord(t, kv, "op-1")
	if rec.GetOutcome().GetHttpStatus() != 500 || rec.GetCommandId() != cmd.GetCommandId() || rec.GetFingerprint() != cmd.GetFingerprint() {
		t.Fatalf("record %v, want the command's 500 internal_error", rec)
	}
	if h := history(t, nc, "ev"); len(h) != 0 {
		t.Fatalf("a command given up on left %d history entries", len(h))
	}
	stream, err := js.Stream(t.Context(), bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the command trimmed", func() bool {
		info, err := stream.Info(t.Context())
		return err == nil && info.State.Msgs == 0
	})

	// The repeat's republished command: the outcome it carries was given up on, so it is folded.
	publish(t, js, cmd, true)
	eventually(t, 10*time.Second, "the retried create in the history", func() bool { return len(history(t, nc, "ev")) == 1 })
	if h := history(t, nc, "ev"); h[0].GetCommandId() != cmd.GetCommandId() || h[0].GetVersion() != 1 {
		t.Fatalf("history %v, want the create at version 1", h)
	}
}

// TestRetryThatFailsAgainIsGivenUpAgain: the event's stored head is undecodable, so its
// commands are answered 500 integrity_error (logsign.Verifier.Open fails it even where nothing
// is signed). The retry of such an op fails the same way and must be answered with a new
// outcome record (the retrying request waits for one), not dropped silently.
func TestRetryThatFailsAgainIsGivenUpAgain(t *testing.T) {
	t.Parallel()
	s, _, js := bustest.Provisioned(t)
	kv := opsBucket(t, js)
	startInstanceWith(t, s.ClientURL(), lifecycle.Config{Workers: 2, GiveUpAfter: 2, RetryDelay: 10 * time.Millisecond})
	if _, err := js.Publish(t.Context(), bus.EventSubject(ch, "ev"), []byte("\xff\xff\xff")); err != nil {
		t.Fatal(err)
	}
	cmd := command("update", "ev", "op-1", 1000)
	publish(t, js, cmd, false)
	var first *busv1.OpRecord
	eventually(t, 10*time.Second, "the op answered integrity_error", func() bool {
		first = opRecord(t, kv, "op-1")
		return bus.GaveUp(first) && first.GetOutcome().GetErrorCode() == bus.CodeIntegrity
	})

	publish(t, js, cmd, true) // the repeat's retry
	eventually(t, 10*time.Second, "a new integrity_error outcome", func() bool {
		rec := opRecord(t, kv, "op-1")
		return bus.GaveUp(rec) && rec.GetUpdatedAt() > first.GetUpdatedAt()
	})
}
