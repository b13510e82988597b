package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
)

// How Follow reads.
const (
	// DefaultResync is how often a follow reads the inbox again without a doorbell, in case one
	// was lost: while the ingest instance reconnected to NATS, or, in a cluster, in the moment
	// after a subscription before the other nodes learnt of it. It matches the streams'
	// keep-alive interval, so a lost doorbell delays an item by at most that.
	DefaultResync = 15 * time.Second
	// followBatch and followBatchBytes bound one read from the leader (items, and bytes of
	// stored messages, 1 MiB) before its items are handed on; a full batch is followed by the
	// next one at once. They bound what a follow holds in memory besides its stream's buffer.
	followBatch      = 64
	followBatchBytes = 1 << 20
	// followRetry bounds the retries of one read while the broker is away (a leader election
	// takes 4–9 s); beyond it the follow ends with unavailable and the client reconnects.
	followRetry = 20 * time.Second
)

// defaultSettle are the pauses of the re-reads after a read found nothing it was told of. A doorbell
// is the publish itself, which can reach this instance before the stream (its leader, in a
// cluster) has stored the message; and right after a follow starts, a message published on
// another node may not have been routed to the new subscription yet. A few cheap reads soon
// after cover both.
var defaultSettle = []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 250 * time.Millisecond, time.Second, 3 * time.Second}

// Follow calls fn with every item of a device's inbox after sequence after, in inbox order,
// then with every new one as it arrives, until ctx is done or fn fails. Items removed (acked,
// or dropped by the per-device cap) before they are reached are skipped; an item's Seq is its
// inbox sequence, so a client resumes with it.
//
// Follow holds no JetStream consumer or other broker-wide resource (DESIGN.md §8.3): the items
// are read from the stream leader (bus.LeaderRange), and new ones are announced by a core NATS
// subscription on the device's inbox subject, one per device and ingest instance, shared by all
// of the device's follows and removed with the last of them. The subscription is registered
// with the server (flushed) before the backlog is read, so an item stored after that read
// rings it; an item stored in between is read twice at most, and handed on once. The doorbell
// messages are the publishers' own (they carry the publisher's ack inbox as reply): they are
// only counted, never answered. A read is retried for up to 20 s while the broker is away;
// beyond that Follow returns unavailable.
func (b *Inbox) Follow(ctx context.Context, deviceKey string, after uint64, fn func(*apiv1.InboxItem) error) error {
	bell, leave, err := b.bells.join(deviceKey)
	if err != nil {
		return unavailable(err)
	}
	defer leave()
	fctx, cancel := context.WithTimeout(ctx, bus.PerTry)
	err = b.nc.FlushWithContext(fctx)
	cancel()
	if err != nil {
		return unavailable(err)
	}

	next := after + 1
	resync := time.NewTicker(b.opts.Resync)
	defer resync.Stop()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	type cause int
	const (
		started cause = iota
		rang
		settling
		resynced
	)
	settle := b.settle
	why, step := started, 0 // step: the next pause of settle; len(settle) = not settling
	for {
		n, full, err := b.readFrom(ctx, deviceKey, &next, fn)
		if err != nil {
			return err
		}
		if why == started && b.testHookBacklogRead != nil {
			b.testHookBacklogRead()
		}
		if full {
			continue // more may be waiting
		}
		switch {
		case why == started:
			step = 0
		case why == rang && n == 0:
			step = 0 // rang for an item not stored yet
		case n > 0:
			step = len(settle)
		}
		var settled <-chan time.Time
		if step < len(settle) {
			timer.Reset(settle[step])
			settled = timer.C
			step++
		} else if b.testHookIdle != nil {
			b.testHookIdle()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-bell:
			why = rang
		case <-settled:
			why = settling
		case <-resync.C:
			why = resynced
		}
		timer.Stop()
	}
}

// readFrom reads up to followBatch items (and about followBatchBytes) from *next on, hands
// each to fn and advances *next past it. full reports a whole batch (there may be more). A
// read the broker fails is retried from the first item not read yet, so a slow read that
// makes progress is never started over.
func (b *Inbox) readFrom(ctx context.Context, deviceKey string, next *uint64, fn func(*apiv1.InboxItem) error) (n int, full bool, err error) {
	var batch []*bus.Msg
	from, size := *next, 0
	err = bus.Retry(ctx, followRetry, func(ctx context.Context) error {
		if full {
			return nil
		}
		err := bus.LeaderRange(ctx, b.nc, bus.StreamInbox, bus.InboxSubject(deviceKey), from, followBatch-len(batch), func(m *bus.Msg) error {
			batch = append(batch, m)
			from, size = m.Seq+1, size+len(m.Data)
			if full = len(batch) >= followBatch || size >= followBatchBytes; full {
				return errBatchFull
			}
			return nil
		})
		if errors.Is(err, errBatchFull) {
			return nil
		}
		return err
	})
	if err != nil {
		if ctx.Err() != nil {
			return 0, false, ctx.Err()
		}
		return 0, false, unavailable(err)
	}
	for _, m := range batch {
		item, err := decode(m.Seq, m.Data)
		if err != nil {
			return 0, false, err
		}
		if err := fn(item); err != nil {
			return 0, false, err
		}
		*next = m.Seq + 1
	}
	return len(batch), full, nil
}

var errBatchFull = errors.New("batch full")

// doorbells keeps one core NATS subscription per device with live follows on this instance,
// and rings every follow of the device when a message is published on its inbox subject.
type doorbells struct {
	nc *nats.Conn

	mu    sync.Mutex
	bells map[string]*doorbell
}

type doorbell struct {
	sub       *nats.Subscription
	listeners map[chan struct{}]struct{}
}

func newDoorbells(nc *nats.Conn) *doorbells {
	return &doorbells{nc: nc, bells: map[string]*doorbell{}}
}

// join returns a channel that receives a value (bursts coalesce into one) whenever something
// is published on the device's inbox subject, and the function that stops it.
func (d *doorbells) join(deviceKey string) (<-chan struct{}, func(), error) {
	ch := make(chan struct{}, 1)
	d.mu.Lock()
	defer d.mu.Unlock()
	bell := d.bells[deviceKey]
	if bell == nil {
		bell = &doorbell{listeners: map[chan struct{}]struct{}{}}
		// Never respond to m: its reply subject is the publisher's JetStream ack inbox.
		sub, err := d.nc.Subscribe(bus.InboxSubject(deviceKey), func(*nats.Msg) { d.ring(bell) })
		if err != nil {
			return nil, nil, fmt.Errorf("subscribe to the inbox doorbell: %w", err)
		}
		bell.sub = sub
		d.bells[deviceKey] = bell
	}
	bell.listeners[ch] = struct{}{}
	var once sync.Once
	return ch, func() { once.Do(func() { d.leave(deviceKey, bell, ch) }) }, nil
}

func (d *doorbells) leave(deviceKey string, bell *doorbell, ch chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(bell.listeners, ch)
	if len(bell.listeners) == 0 && d.bells[deviceKey] == bell {
		delete(d.bells, deviceKey)
		_ = bell.sub.Unsubscribe() // fails only when the connection is closed, which removed it
	}
}

func (d *doorbells) ring(bell *doorbell) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for ch := range bell.listeners {
		select {
		case ch <- struct{}{}:
		default: // already rung, not yet read
		}
	}
}

// subscriptions is how many doorbell subscriptions are open (tests).
func (d *doorbells) subscriptions() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.bells)
}
