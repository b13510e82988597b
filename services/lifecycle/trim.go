package lifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// PUSHGO_COMMANDS (each partition's) keeps limits retention, and lifecycle removes the commands its consumer has
// acknowledged every TrimEvery with one purge up to the consumer's ack floor. This is a work
// queue with batched removal: each command is still handed to one instance at a time, stays
// until it is folded, and is gone seconds after. A work-queue retention policy removes each
// message on its ack instead, and the file store then replaces its write block every time the
// queue drains, which on a busy gateway is several times a second: a file created and one
// deleted each time, 10 % of the server's CPU in a profile (docs/benchmarks.md).

// TrimEvery is how often acknowledged commands are removed.
const TrimEvery = 2 * time.Second

// commandsConsumer creates or updates the durable lifecycle consumer of one commands stream
// (one per partition). A consumer made anew (an operator deleted it) is handed commands
// folded but not yet trimmed again; every command is checked against its event's op filter
// first, so none is folded twice.
func commandsConsumer(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return js.CreateOrUpdateConsumer(ctx, stream, cfg)
}

// trimCommands removes the acknowledged commands of stream, cons's, every interval until ctx
// is done. Failures are
// logged and retried on the next tick: until then the commands only take disk space.
func trimCommands(ctx context.Context, js jetstream.JetStream, stream string, cons jetstream.Consumer, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	var trimmed uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		floor, err := trimOnce(ctx, js, stream, cons, trimmed)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("trim folded commands", "stream", stream, "err", err)
			}
			continue
		}
		trimmed = floor
	}
}

// trimOnce purges the commands up to the consumer's ack floor when it has moved past trimmed,
// and returns the floor.
func trimOnce(ctx context.Context, js jetstream.JetStream, stream string, cons jetstream.Consumer, trimmed uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := cons.Info(ctx)
	if err != nil {
		return trimmed, fmt.Errorf("consumer info: %w", err)
	}
	floor := info.AckFloor.Stream
	if floor <= trimmed {
		return trimmed, nil
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return trimmed, err
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return trimmed, fmt.Errorf("purge below %d: %w", floor+1, err)
	}
	return floor, nil
}
