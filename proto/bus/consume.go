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
	var wg sync.WaitGroup
	for i := range queues {
		q := make(chan jetstream.Msg, 16)
		queues[i] = q
		wg.Go(func() {
			for m := range q {
				var mu sync.Mutex
				done := false
				var keep *time.Timer
				mu.Lock()
				keep = time.AfterFunc(InProgressEvery, func() {
					mu.Lock()
					defer mu.Unlock()
					if !done {
						_ = m.InProgress()
						keep.Reset(InProgressEvery)
					}
				})
				mu.Unlock()
				handle(hctx, m)
				mu.Lock()
				done = true
				keep.Stop()
				mu.Unlock()
			}
		})
	}
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
