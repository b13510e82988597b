// Package lifecycle is the lifecycle service: it consumes validated commands from
// PUSHGO_COMMANDS, folds each into its event's state under the rules of DESIGN.md §3, and
// appends the resulting domain event to the event store PUSHGO_EVENTS with optimistic
// concurrency. Rejections become op outcomes in pushgo_ops. Any number of instances may run
// against one JetStream; they share the durable consumer, and an event is never corrupted by
// two of them handling its commands at once.
package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/proto/logsign"
	"pushgo.dev/gateway/proto/metrics"
	"pushgo.dev/gateway/services/lifecycle/internal/commands"
	"pushgo.dev/gateway/services/lifecycle/internal/natsstore"
)

// Defaults of Config.
const (
	// DefaultWorkers is how many events one instance works on at once; commands of one event
	// go to one worker, in order.
	DefaultWorkers = 64
	// DefaultAckWait is how long a command may stay unacknowledged before JetStream hands it to
	// another instance. Short, so that commands lost in flight to an instance whose connection
	// died (a node's death: up to a pull's worth per partition) come back before the client's
	// 5 s dispatch wait ends; a command held longer (a fold retried through a leader election)
	// is reported in progress every bus.InProgressEvery.
	DefaultAckWait = 3 * time.Second
	// headCacheSize bounds the event heads remembered when Config.CacheHeads is set. Only
	// events changed in the last moments benefit, and each head is a tree of small objects
	// that would outlive a burst and keep heap pages from being returned, so it is small.
	headCacheSize = 1024
	// maxAckPending bounds the commands in flight across all instances, per partition.
	maxAckPending = 8192
	// SpreadLeadersEvery is how often lifecycle checks that the partitions' log leaders sit
	// on different nodes and each commands stream's leader with its partition's
	// (bus.KeepPartitionLeaders), and moves one if not: a node that restarts comes back
	// leading nothing.
	SpreadLeadersEvery = 30 * time.Second
)

// Config configures one lifecycle instance.
type Config struct {
	Workers int
	AckWait time.Duration
	// CacheHeads makes the instance remember the heads it appended (natsstore.Store.CacheHeads):
	// set it when this is the only lifecycle instance, as in pushgo serve.
	CacheHeads bool
	// TrimEvery is how often folded commands are removed from PUSHGO_COMMANDS (TrimEvery).
	TrimEvery time.Duration
	// GiveUpAfter and RetryDelay tune the retries of failing commands (commands.Options;
	// defaults 8 deliveries, 1 s doubling).
	GiveUpAfter int
	RetryDelay  time.Duration
	// Bus sizes the streams and buckets this instance provisions at start.
	Bus bus.Options
	// LogKeyFile is the private log key (proto/logsign) that seals every appended entry;
	// LogPublicKeys (comma-separated files) are the keys of earlier entries, for rotation.
	// Without a key the log is written unsigned and heads are not checked (a warning at start).
	LogKeyFile, LogPublicKeys string
}

// Validate reports a configuration that cannot run.
func (c Config) Validate() error {
	if c.Workers < 0 || c.AckWait < 0 || c.TrimEvery < 0 || c.GiveUpAfter < 0 || c.RetryDelay < 0 {
		return errors.New("lifecycle: workers, ack wait, trim interval and retry settings must not be negative")
	}
	return nil
}

// Deps are the connections Run uses; Run does not close them.
type Deps struct {
	NC     *nats.Conn
	Logger *slog.Logger
	// LogMemo, when set, is shared with the other services of this process (pushgo serve):
	// entries lifecycle signed are accepted without verifying their signature again
	// (logsign.Memo).
	LogMemo *logsign.Memo
}

// Run provisions the bus, then handles commands until ctx is done, finishing those in hand.
func Run(ctx context.Context, cfg Config, deps Deps) error {
	err := run(ctx, cfg, deps)
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil // stopped while starting, e.g. waiting for the streams other services provision
	}
	return err
}

func run(ctx context.Context, cfg Config, deps Deps) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cmp.Or(deps.Logger, slog.Default()).With("service", "lifecycle")
	js, err := jetstream.New(deps.NC)
	if err != nil {
		return fmt.Errorf("lifecycle: %w", err)
	}
	signer, verifier, err := logsign.Load(cfg.LogKeyFile, cfg.LogPublicKeys)
	if err != nil {
		return fmt.Errorf("lifecycle: %w", err)
	}
	if signer != nil {
		// A log stream made now is signed from its first entry: its horizon goes in the
		// creation config, so no update follows while dispatch creates its consumer on it.
		cfg.Bus.EventsCreateMetadata = func(stream string) map[string]string {
			return map[string]string{logsign.MetaSignedFrom: signer.Horizon(stream, 1)}
		}
	}
	if err := bus.ProvisionRole(ctx, js, cfg.Bus, bus.RoleLifecycle, log); err != nil {
		return fmt.Errorf("lifecycle: %w", err)
	}
	layout := cfg.Bus.Layout()
	// One durable consumer per partition's commands stream, all of them pulled by every
	// instance: any instance takes over any partition.
	cons := make([]jetstream.Consumer, layout.Partitions())
	for p := range cons {
		cons[p], err = commandsConsumer(ctx, js, layout.CommandsStream(p), jetstream.ConsumerConfig{
			Durable:       bus.ConsumerLifecycle,
			Description:   "lifecycle: folds commands into the event store",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       cmp.Or(cfg.AckWait, DefaultAckWait),
			MaxDeliver:    -1, // nothing accepted is dropped: failures back off, and a command that can never succeed gets an outcome (commands.Options)
			MaxAckPending: maxAckPending,
		})
		if err != nil {
			return fmt.Errorf("lifecycle: consumer of %s: %w", layout.CommandsStream(p), err)
		}
	}
	defer metrics.WatchBroker(cons, nil)() // its pending commands, on each scrape
	ops, err := js.KeyValue(ctx, bus.BucketOps)
	if err != nil {
		return fmt.Errorf("lifecycle: ops bucket: %w", err)
	}
	verifier.SetDirect(cfg.Bus.Replicas <= 1) // an R1 log's only replica is its leader
	signer.SetMemo(deps.LogMemo)
	verifier.SetMemo(deps.LogMemo)
	if signer == nil {
		log.Warn("no log key (--log-key-file): the event log is written unsigned and not checked")
		verifier = nil
	} else {
		for _, stream := range layout.EventsStreams() {
			if err := verifier.EnsureHorizon(ctx, js, stream, signer); err != nil {
				return fmt.Errorf("lifecycle: %w", err)
			}
		}
	}
	store := natsstore.New(deps.NC, js, 15*time.Second, cfg.Bus.Replicas <= 1, signer, verifier)
	store.SetLayout(layout)
	if cfg.CacheHeads {
		store.CacheHeads(headCacheSize)
	}
	window := cmp.Or(max(cfg.Bus.IdempotencyWindow, 0), bus.DefaultIdempotencyWindow)
	h := commands.New(store, deps.NC, ops, window, commands.Options{GiveUpAfter: cfg.GiveUpAfter, RetryDelay: cfg.RetryDelay}, log)
	log.Info("lifecycle running", "workers", cmp.Or(cfg.Workers, DefaultWorkers), "partitions", layout.Partitions())
	var trim sync.WaitGroup
	trimCtx, stopTrim := context.WithCancel(ctx)
	for p, c := range cons {
		trim.Go(func() { trimCommands(trimCtx, js, layout.CommandsStream(p), c, cmp.Or(cfg.TrimEvery, TrimEvery), log) })
	}
	if layout.Partitions() > 1 && cfg.Bus.Replicas > 1 {
		// Writes scale with nodes only when the partitions' leaders are on different nodes.
		trim.Go(func() { bus.KeepPartitionLeaders(trimCtx, js, layout, SpreadLeadersEvery, log) })
	}
	defer func() { stopTrim(); trim.Wait() }()
	return bus.Consume(ctx, cons, cmp.Or(cfg.Workers, DefaultWorkers), log, h.Handle)
}
