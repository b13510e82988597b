package bus

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// InProgressEvery is how often a message still being handled is reported in progress, which
// pushes its ack deadline back: consumers' ack waits (3 s) can then stay short, so a message
// held by a crashed instance, or lost on its way to an instance whose connection died, comes
// back within a client's dispatch wait, while a handler retrying through a leader election
// keeps its message. A third of the ack wait: one lost report does not hand the message out.
const InProgressEvery = time.Second

// DefaultChannelShare is the share of Consume's workers that the messages of one channel may
// hold at once: a quarter, so that a channel whose ops are slow (a webhook that does not
// answer, held for the whole delivery budget) leaves three quarters to the others.
const DefaultChannelShare = 4

// Consume pulls from every consumer of cons (one per partition) until ctx is done and hands
// each message to one of workers
// goroutines: the messages of one subject (one event) one at a time and in stream order on
// this instance, at most workers/DefaultChannelShare (at least 1) messages of one channel at
// once, and otherwise in arrival order, so different events proceed in parallel and no
// channel holds every worker. handle must ack, nak or term the message itself; it gets a
// context that is not cancelled when ctx is, so that in-flight work can finish. Messages
// received but waiting for a worker are reported in progress every InProgressEvery (they
// wait their turn here, not at the server), and when ctx ends those not yet handed to a
// worker are given back (nak: redelivered at once, here or to another instance); Consume
// returns once the messages in hand are handled. What Consume holds is bounded by the
// consumer's MaxAckPending.
func Consume(ctx context.Context, cons []jetstream.Consumer, workers int, log *slog.Logger, handle func(context.Context, jetstream.Msg)) error {
	workers = max(workers, 1)
	hctx := context.WithoutCancel(ctx)
	q := newFairQueue[jetstream.Msg](workers/DefaultChannelShare, channelOfSubject)
	slots := make([]inHand, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for {
				subject, m, ok := q.next()
				if !ok {
					return
				}
				slots[i].set(m)
				handle(hctx, m)
				slots[i].set(nil)
				q.done(subject)
			}
		})
	}
	// One ticker reports the messages held for a while, in hand or queued, as in progress.
	stopTicks := make(chan struct{})
	var tickers sync.WaitGroup
	tickers.Go(func() {
		t := time.NewTicker(InProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-stopTicks:
				return
			case now := <-t.C:
				for i := range slots {
					slots[i].keepAlive(now)
				}
				q.waiting(now, InProgressEvery, func(m jetstream.Msg) { _ = m.InProgress() })
			}
		}
	})
	stop := func() {
		for _, m := range q.close() {
			_ = m.Nak()
		}
		wg.Wait()
		close(stopTicks)
		tickers.Wait()
	}

	// All partitions feed the one queue, so the per-channel shares hold across them; each
	// pulls its part of the 4 × workers messages in flight (at least 16).
	var ccs []jetstream.ConsumeContext
	drain := func() {
		for _, cc := range ccs {
			cc.Drain()
		}
		for _, cc := range ccs {
			<-cc.Closed()
		}
	}
	for _, c := range cons {
		cc, err := c.Consume(func(m jetstream.Msg) { q.push(m.Subject(), m, time.Now()) },
			jetstream.PullMaxMessages(max(4*workers/len(cons), 16)),
			// Short pulls with heartbeats: a pull stuck after a leader change (the server no longer
			// serves it) is noticed in seconds and replaced, where the defaults take ~30 s.
			jetstream.PullExpiry(5*time.Second),
			jetstream.PullHeartbeat(2*time.Second),
			jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
				log.Warn("consume", "err", err)
			}))
		if err != nil {
			drain()
			stop()
			return err
		}
		ccs = append(ccs, cc)
	}
	<-ctx.Done()
	drain()
	stop()
	return nil
}

// inHand is the message a worker is handling and since when.
type inHand struct {
	mu    sync.Mutex
	m     jetstream.Msg
	since time.Time
}

func (s *inHand) set(m jetstream.Msg) {
	s.mu.Lock()
	s.m = m
	if m != nil {
		s.since = time.Now()
	}
	s.mu.Unlock()
}

// keepAlive reports the message in hand in progress once it has been held a full interval.
func (s *inHand) keepAlive(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m != nil && now.Sub(s.since) >= InProgressEvery {
		_ = s.m.InProgress()
	}
}
