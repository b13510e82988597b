// Package retryq is the durable retry schedule of webhook deliveries (DESIGN.md §10.3): a
// delivery still failing when its op's delivery budget ends gets its next attempt written to
// PUSHGO_RETRIES as a JetStream message schedule ("Nats-Schedule: @at <time>", nats-server
// 2.12+). The broker keeps it with the stream (replicated in a cluster, on disk), fires it at
// its time onto the delivery's due subject, and any dispatch instance takes it from there
// through the durable consumer bus.ConsumerRetries. So a schedule survives restarts of every
// service and of the broker: a schedule whose time passed while the broker was down fires when
// it is back, and a due task not acked by a dispatch instance that died comes back after the
// consumer's ack wait.
//
// There is one schedule per delivery (the broker keeps the last message of a schedule
// subject), so scheduling a delivery again replaces its pending attempt instead of adding one.
package retryq

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
)

// DefaultSchedule is the delays of --webhook-retry-schedule: the first counts from the end of
// the op's budget, each next one from the attempt before it (46.6 h in all, as Standard
// Webhooks recommends).
const DefaultSchedule = "5s,5m,30m,2h,5h,10h,24h"

// Schedule is the delays between the attempts of a delivery after its op's budget.
type Schedule []time.Duration

// maxDelay bounds one delay: a due task must fire before the stream's max age removes it.
const maxDelay = 3 * 24 * time.Hour

// ParseSchedule reads a comma-separated list of Go durations, each at least 1 s (the broker's
// schedules have second precision) and at most 72 h; "none" (or "") turns durable retries off.
func ParseSchedule(s string) (Schedule, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "none" {
		return nil, nil
	}
	var out Schedule
	for part := range strings.SplitSeq(s, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("webhook retry schedule %q: %q is not a duration (e.g. 5s, 30m, 2h)", s, part)
		}
		if d < time.Second || d > maxDelay {
			return nil, fmt.Errorf("webhook retry schedule %q: %s is outside 1s..72h", s, d)
		}
		out = append(out, d)
	}
	return out, nil
}

// Delay returns the delay before attempt step of the schedule (0 is the first after the
// budget); false when the schedule has no such step.
func (s Schedule) Delay(step int) (time.Duration, bool) {
	if step < 0 || step >= len(s) {
		return 0, false
	}
	return s[step], true
}

// Queue writes and takes retry tasks. It is safe for concurrent use.
type Queue struct {
	js       jetstream.JetStream
	schedule Schedule
	log      *slog.Logger
}

// brokerBudget bounds the retries of a schedule write through a leader election.
const brokerBudget = 10 * time.Second

// ackWait is how long a due task may stay unacked before it is handed to another instance: an
// attempt takes at most the webhook timeout and a record update.
const ackWait = 30 * time.Second

// New returns a queue on PUSHGO_RETRIES (provisioned by dispatch) with schedule's delays.
func New(js jetstream.JetStream, schedule Schedule, log *slog.Logger) *Queue {
	return &Queue{js: js, schedule: schedule, log: log}
}

// Schedule returns the queue's delays.
func (q *Queue) Schedule() Schedule { return q.schedule }

// Add schedules task's attempt for at rounded up to the second, and returns that time: the
// task becomes due on its delivery's due subject then, or at once when it has passed. It
// replaces the delivery's pending schedule, if any.
func (q *Queue) Add(ctx context.Context, task *busv1.RetryTask, at time.Time) (time.Time, error) {
	data, err := proto.Marshal(task)
	if err != nil {
		return time.Time{}, err
	}
	if frac := at.Sub(at.Truncate(time.Second)); frac > 0 {
		at = at.Add(time.Second - frac)
	}
	msg := &nats.Msg{Subject: bus.RetryScheduleSubject(task.GetDeliveryId()), Data: data, Header: nats.Header{}}
	msg.Header.Set("Nats-Schedule", "@at "+at.UTC().Format(time.RFC3339))
	msg.Header.Set("Nats-Schedule-Target", bus.RetryDueSubject(task.GetDeliveryId()))
	return at, bus.Retry(ctx, brokerBudget, func(ctx context.Context) error {
		_, err := q.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(bus.StreamRetries))
		return err
	})
}

// Consumer creates or updates the durable consumer of due tasks, which every dispatch
// instance pulls from; workers is how many tasks one instance handles at once.
func (q *Queue) Consumer(ctx context.Context, workers int) (jetstream.Consumer, error) {
	cons, err := q.js.CreateOrUpdateConsumer(ctx, bus.StreamRetries, jetstream.ConsumerConfig{
		Durable:       bus.ConsumerRetries,
		Description:   "dispatch: makes the scheduled attempts of webhook deliveries",
		FilterSubject: bus.RetryDueSubjects,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		MaxDeliver:    -1,
		MaxAckPending: 4 * max(workers, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("consumer of %s: %w", bus.StreamRetries, err)
	}
	return cons, nil
}

// Consume takes due tasks from cons (Consumer) until ctx is done and hands each to handle on
// one of workers goroutines; it returns once the tasks in hand are handled. handle's nil acks
// the task (done, whatever the attempt's result: handle schedules the next one itself); an
// error hands it back for another try 5 s later. A task that does not decode is dropped and
// logged.
func (q *Queue) Consume(ctx context.Context, cons jetstream.Consumer, workers int, handle func(context.Context, *busv1.RetryTask) error) error {
	workers = max(workers, 1)
	hctx := context.WithoutCancel(ctx)
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			q.handle(hctx, m, handle)
		})
	}, jetstream.PullMaxMessages(workers), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if !errors.Is(err, jetstream.ErrNoHeartbeat) {
			q.log.Debug("retry consumer", "err", err)
		}
	}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", bus.StreamRetries, err)
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	wg.Wait()
	return nil
}

func (q *Queue) handle(ctx context.Context, m jetstream.Msg, handle func(context.Context, *busv1.RetryTask) error) {
	task := &busv1.RetryTask{}
	if err := proto.Unmarshal(m.Data(), task); err != nil || task.GetDeliveryId() == "" {
		q.log.Error("undecodable webhook retry task dropped", "subject", m.Subject(), "err", err)
		_ = m.TermWithReason("undecodable")
		return
	}
	if err := handle(ctx, task); err != nil {
		q.log.Warn("webhook retry will be tried again", "delivery", task.GetDeliveryId(), "err", err)
		_ = m.NakWithDelay(5 * time.Second)
		return
	}
	if err := m.Ack(); err != nil {
		q.log.Warn("ack webhook retry", "delivery", task.GetDeliveryId(), "err", err)
	}
}
