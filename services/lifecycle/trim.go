package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
)

// PUSHGO_COMMANDS keeps limits retention, and lifecycle removes the commands its consumer has
// acknowledged every TrimEvery with one purge up to the consumer's ack floor. This is a work
// queue with batched removal: each command is still handed to one instance at a time, stays
// until it is folded, and is gone seconds after. A work-queue retention policy removes each
// message on its ack instead, and the file store then replaces its write block every time the
// queue drains, which on a busy gateway is several times a second: a file created and one
// deleted each time, 10 % of the server's CPU in a profile (docs/benchmarks.md).

// TrimEvery is how often acknowledged commands are removed.
const TrimEvery = 2 * time.Second

// metaHorizon is the consumer metadata key holding the stream sequence at which the consumer
// was created: a command below it may have been folded by an earlier consumer of that name and
// not yet trimmed, so its first delivery is checked against the event's history.
const metaHorizon = "pushgo_replay_horizon"

// commandsConsumer creates or updates the durable lifecycle consumer and returns it with its
// replay horizon.
func commandsConsumer(ctx context.Context, js jetstream.JetStream, cfg jetstream.ConsumerConfig) (jetstream.Consumer, uint64, error) {
	var horizon uint64
	old, err := js.Consumer(ctx, bus.StreamCommands, cfg.Durable)
	switch {
	case err == nil:
		horizon, _ = strconv.ParseUint(old.CachedInfo().Config.Metadata[metaHorizon], 10, 64)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		s, err := js.Stream(ctx, bus.StreamCommands)
		if err != nil {
			return nil, 0, err
		}
		horizon = s.CachedInfo().State.LastSeq + 1
	default:
		return nil, 0, err
	}
	cfg.Metadata = map[string]string{metaHorizon: strconv.FormatUint(horizon, 10)}
	cons, err := js.CreateOrUpdateConsumer(ctx, bus.StreamCommands, cfg)
	if err != nil {
		return nil, 0, err
	}
	return cons, horizon, nil
}

// trimCommands removes acknowledged commands every interval until ctx is done. Failures are
// logged and retried on the next tick: until then the commands only take disk space.
func trimCommands(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	var trimmed uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		floor, err := trimOnce(ctx, js, cons, trimmed)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("trim folded commands", "err", err)
			}
			continue
		}
		trimmed = floor
	}
}

// trimOnce purges the commands up to the consumer's ack floor when it has moved past trimmed,
// and returns the floor.
func trimOnce(ctx context.Context, js jetstream.JetStream, cons jetstream.Consumer, trimmed uint64) (uint64, error) {
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
	s, err := js.Stream(ctx, bus.StreamCommands)
	if err != nil {
		return trimmed, err
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSequence(floor+1)); err != nil {
		return trimmed, fmt.Errorf("purge below %d: %w", floor+1, err)
	}
	return floor, nil
}
