package ops

import (
	"errors"
	"log/slog"
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
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

func update(opID, fingerprint string) Op {
	return Op{Route: "update", ChannelID: "ch1", OpID: opID, EventID: "ev1", Fingerprint: fingerprint,
		Fields: &apiv1.EventFields{Status: "running"}}
}

// With nothing answering, an op times out with its ids as data; every request publishes a
// command of its own (lifecycle tells repeats apart from the log).
func TestUnansweredOpTimesOut(t *testing.T) {
	s, _, js := newSubmitter(t, 50*time.Millisecond)
	op := update("op-1", "fp")
	for i := range 2 {
		_, err := s.Submit(t.Context(), op)
		e, ok := errors.AsType[*apierr.Error](err)
		if !ok || e.Code != "dispatch_timeout" {
			t.Fatalf("submit %d: got %v, want dispatch_timeout", i, err)
		}
		if d, _ := e.Data.(*apiv1.EventOpResult); d.GetEventId() != "ev1" || d.GetOpId() != "op-1" {
			t.Fatalf("submit %d: data %v, want the op's ids", i, e.Data)
		}
	}
	stream, err := js.Stream(t.Context(), bus.StreamCommands)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Fatalf("commands stream holds %d messages, want 2", info.State.Msgs)
	}
}

// Outcomes are routed by op and by request: the op's delivery answers every request with the
// same body; a conflict answers only the request it was decided for; a give-up of another
// attempt answers nobody else.
func TestOutcomesReachTheRightRequests(t *testing.T) {
	s, nc, _ := newSubmitter(t, 10*time.Second)
	cmds := commands(t, nc)

	type answer struct {
		out *busv1.Outcome
		err error
	}
	submit := func(op Op) chan answer {
		c := make(chan answer, 1)
		go func() {
			out, err := s.Submit(t.Context(), op)
			c <- answer{out, err}
		}()
		return c
	}
	a, b := submit(update("op-1", "fp-a")), submit(update("op-1", "fp-a"))
	conflicting := submit(update("op-1", "fp-b"))
	got := map[string]*busv1.EventCommand{}
	for range 3 {
		cmd := <-cmds
		got[cmd.GetFingerprint()+cmd.GetCommandId()] = cmd
	}
	var first, other *busv1.EventCommand
	for _, cmd := range got {
		switch {
		case cmd.GetFingerprint() == "fp-b":
			other = cmd
		case first == nil:
			first = cmd
		}
	}
	// Another attempt's give-up with the same body answers nobody waiting now.
	publishOutcome(t, nc, outcomeOf(first, "c0ffee", 500, bus.CodeGaveUp), false)
	publishOutcome(t, nc, outcomeOf(other, other.GetCommandId(), 409, "op_id_conflict"), false)
	if r := <-conflicting; r.out.GetErrorCode() != "op_id_conflict" {
		t.Fatalf("conflicting request answered %v %v, want op_id_conflict", r.out, r.err)
	}
	publishOutcome(t, nc, outcomeOf(first, first.GetCommandId(), 200, ""), false)
	for i, c := range []chan answer{a, b} {
		if r := <-c; r.err != nil || r.out.GetHttpStatus() != 200 {
			t.Fatalf("request %d answered %v %v, want the delivery's 200", i, r.out, r.err)
		}
	}
}

// A 503 read back for a repeat (recorded) is redriven: dispatch is asked to retry the failed
// targets, and its answer is the request's. A 503 decided for the request itself is not.
func TestRecordedPartialFailureIsRedriven(t *testing.T) {
	s, nc, _ := newSubmitter(t, 10*time.Second)
	cmds := commands(t, nc)
	var mu sync.Mutex
	var asked []*busv1.RedriveRequest
	sub, err := nc.Subscribe(bus.RedriveSubject, func(m *nats.Msg) {
		req := &busv1.RedriveRequest{}
		if err := proto.Unmarshal(m.Data, req); err != nil {
			t.Error(err)
			return
		}
		mu.Lock()
		asked = append(asked, req)
		mu.Unlock()
		done := &busv1.OpRecord{ChannelId: req.GetChannelId(), OpId: req.GetOpId(), CommandId: req.GetCommandId(),
			State: busv1.OpState_OP_STATE_DONE, Outcome: &busv1.Outcome{HttpStatus: 200}}
		data, _ := proto.Marshal(done)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	for _, recorded := range []bool{false, true} {
		c := make(chan *busv1.Outcome, 1)
		go func() {
			out, err := s.Submit(t.Context(), update("op-1", "fp"))
			if err != nil {
				t.Error(err)
			}
			c <- out
		}()
		cmd := <-cmds
		publishOutcome(t, nc, outcomeOf(cmd, "original", 503, "dispatch_partial_failure"), recorded)
		out := <-c
		mu.Lock()
		n := len(asked)
		mu.Unlock()
		switch {
		case !recorded && (out.GetHttpStatus() != 503 || n != 0):
			t.Fatalf("a fresh 503 answered %v after %d redrives, want itself and none", out, n)
		case recorded && (out.GetHttpStatus() != 200 || n != 1 || asked[0].GetCommandId() != "original"):
			t.Fatalf("a recorded 503 answered %v after redrives %v, want the redrive of command original", out, asked)
		}
	}
}

// An outcome published while the instance's connection is down is lost with core NATS; after
// the reconnect the instance asks again (a repeat with a new command id) and the request is
// answered by the recorded outcome instead of waiting out DispatchWait.
func TestOutcomeLostInAReconnectIsAskedForAgain(t *testing.T) {
	srv, nc, _ := bustest.Provisioned(t)
	own, err := nats.Connect(srv.ClientURL(), nats.ReconnectWait(10*time.Millisecond), nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(own.Close)
	ownJS, err := jetstream.New(own)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(t.Context(), own, ownJS, Config{DispatchWait: time.Minute, RetryBudget: 5 * time.Second},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	cmds := commands(t, nc)

	type answer struct {
		out *busv1.Outcome
		err error
	}
	got := make(chan answer, 1)
	go func() {
		out, err := s.Submit(t.Context(), update("op-1", "fp"))
		got <- answer{out, err}
	}()
	next := func(what string) *busv1.EventCommand {
		select {
		case cmd := <-cmds:
			return cmd
		case <-time.After(10 * time.Second):
			t.Fatal(what)
			return nil
		}
	}
	first := next("the request published no command") // its outcome is "lost": nothing answers it
	if err := own.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	again := next("no command published again after the reconnect")
	if again.GetCommandId() == first.GetCommandId() || again.GetEnvelope().GetOpId() != "op-1" ||
		again.GetRoute() != "update" || again.GetFingerprint() != "fp" {
		t.Fatalf("asked again with %v, want the same op under a new command id (first: %s)", again, first.GetCommandId())
	}
	// Lifecycle answers the repeat with the op's recorded outcome, which names the first command.
	publishOutcome(t, nc, outcomeOf(first, first.GetCommandId(), 200, ""), true)
	select {
	case a := <-got:
		if a.err != nil || a.out.GetHttpStatus() != 200 {
			t.Fatalf("answered %v, %v; want the recorded 200", a.out, a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the request was not answered by the outcome given after the reconnect")
	}
}

// commands decodes the commands published to ch1/ev1, standing in for lifecycle.
func commands(t *testing.T, nc *nats.Conn) <-chan *busv1.EventCommand {
	t.Helper()
	c := make(chan *busv1.EventCommand, 16)
	sub, err := nc.Subscribe(bus.CommandSubject("ch1", "ev1"), func(m *nats.Msg) {
		cmd := &busv1.EventCommand{}
		if err := proto.Unmarshal(m.Data, cmd); err != nil {
			t.Error(err)
			return
		}
		c <- cmd
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	// The server has the subscription before anything, on any connection, publishes.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func outcomeOf(cmd *busv1.EventCommand, commandID string, status uint32, code string) *busv1.OpRecord {
	return bus.DoneRecord(cmd.GetEnvelope(), cmd.GetRoute(), commandID, cmd.GetFingerprint(), 1, 2,
		&busv1.Outcome{HttpStatus: status, ErrorCode: code})
}

func publishOutcome(t *testing.T, nc *nats.Conn, rec *busv1.OpRecord, recorded bool) {
	t.Helper()
	data, err := proto.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(bus.OutcomeSubject(rec.GetChannelId(), rec.GetOpId()))
	m.Data = data
	if recorded {
		m.Header.Set(bus.HeaderRecorded, "1")
	}
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
}

// newSubmitter runs a Submitter on a fresh JetStream server; no lifecycle or dispatch runs.
func newSubmitter(t *testing.T, dispatchWait time.Duration) (*Submitter, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	_, nc, js := bustest.Provisioned(t)
	s, err := New(t.Context(), nc, js, Config{DispatchWait: dispatchWait, RetryBudget: 5 * time.Second},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, nc, js
}
