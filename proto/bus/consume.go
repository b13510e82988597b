package bus

import (
	"context"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// InProgressEvery is how often a message still being handled is reported in progress, which
// pushes its ack deadline back: consumers' ack waits (15–30 s) can then stay short, so a
// message held by a crashed instance comes back soon, while a handler retrying through a
// leader election keeps its message.
const InProgressEvery = 5 * time.Second

// Consume pulls from cons until ctx is done and hands each message to one of workers
// goroutines chosen by its subject, so the messages of one subject (one event) are handled one
// at a time and in stream order by this instance, while different events proceed in parallel.
// handle must ack, nak or term the message itself; it gets a context that is not cancelled when
// ctx is, so that in-flight work can finish. Consume returns after the messages already
// received are handled.
func Consume(ctx context.Context, cons jetstream.Consumer, workers int, log *slog.Logger, handle func(context.Context, jetstream.Msg)) error {
	workers = max(workers, 1)
	hctx := context.WithoutCancel(ctx)
	queues := make([]chan jetstream.Msg, workers)
	slots := make([]inHand, workers)
	var wg sync.WaitGroup
	for i := range queues {
		q := make(chan jetstream.Msg, 16)
		queues[i] = q
		wg.Go(func() {
			for m := range q {
				slots[i].set(m)
				handle(hctx, m)
				slots[i].set(nil)
			}
		})
	}
	// One ticker for all workers reports the messages held for a while as in progress.
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
			}
		}
	})
	defer func() { close(stopTicks); tickers.Wait() }()

	cc, err := cons.Consume(func(m jetstream.Msg) {
		h := fnv.New32a()
		_, _ = h.Write([]byte(m.Subject()))
		queues[h.Sum32()%uint32(workers)] <- m
	},
		jetstream.PullMaxMessages(4*workers),
		// Short pulls with heartbeats: a pull stuck after a leader change (the server no longer
		// serves it) is noticed in seconds and replaced, where the defaults take ~30 s.
		jetstream.PullExpiry(5*time.Second),
		jetstream.PullHeartbeat(2*time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			log.Warn("consume", "err", err)
		}))
	if err != nil {
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
		return err
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
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
