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
	// DefaultResync is how often a follow checks whether a doorbell may have been lost — the
	// ingest instance reconnected to NATS, or the subscription dropped messages (a slow
	// consumer) — and if so reads the inbox again. It matches the streams' keep-alive interval,
	// so such a loss delays an item by at most that. Every fullResyncEvery-th check (2.5 min
	// by default) reads regardless, for losses no counter shows (a cluster route that broke
	// and healed).
	DefaultResync   = 15 * time.Second
	fullResyncEvery = 10
	// followBatch and followBatchBytes bound one read from the leader (items, and bytes of
	// stored messages, 1 MiB) before its items are handed on; a full batch is followed by the
	// next one at once. They bound what a follow holds in memory besides its stream's buffer.
	followBatch      = 64
	followBatchBytes = 1 << 20
	// followRetry bounds the retries of one read while the broker is away (a leader election
	// takes 4–9 s); beyond it the follow ends with unavailable and the client reconnects.
	followRetry = 20 * time.Second
)

// defaultSettle are the pauses of the re-reads after a read found nothing it was told of. A
// doorbell is the publish itself, which can reach this instance before the stream (its leader, in a
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
// rings it. Reads go forward from the last item handed on, so none is handed on twice. The
// doorbell messages are the publishers' own (they carry the publisher's ack inbox as reply):
// they only ring, and are never answered.
//
// Cost: one leader read per item plus one that finds the end, per follow; a few more right
// after the start and after a doorbell that found nothing yet (defaultSettle); an idle follow
// makes no broker call but one read every fullResyncEvery × Options.Resync. A read is retried
// for up to 20 s while the broker is away; beyond that Follow returns unavailable.
func (b *Inbox) Follow(ctx context.Context, deviceKey string, after uint64, fn func(*apiv1.InboxItem) error) error {
	bell, err := b.bells.join(deviceKey)
	if err != nil {
		return unavailable(err)
	}
	defer bell.leave()
	lost := bell.lost()
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
	read, lastRead := true, time.Now()
	for {
		if read {
			n, full, err := b.readFrom(ctx, deviceKey, &next, fn)
			if err != nil {
				return err
			}
			lastRead = time.Now()
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
		case <-bell.ch:
			why, read = rang, true
		case <-settled:
			why, read = settling, true
		case <-resync.C:
			// Read again only when a doorbell may have been lost since the last check, or when
			// the last read is long ago: an idle stream costs the broker nothing.
			why = resynced
			now := bell.lost()
			read = now != lost || time.Since(lastRead) >= fullResyncEvery*b.opts.Resync
			lost = now
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

// listener is one follow's part of a device's doorbell.
type listener struct {
	// ch receives a value (bursts coalesce into one) whenever something is published on the
	// device's inbox subject.
	ch   chan struct{}
	d    *doorbells
	key  string
	bell *doorbell
	once sync.Once
}

// join returns a listener of the device's doorbell; the caller must leave it.
func (d *doorbells) join(deviceKey string) (*listener, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	bell := d.bells[deviceKey]
	if bell == nil {
		bell = &doorbell{listeners: map[chan struct{}]struct{}{}}
		// Never respond to m: its reply subject is the publisher's JetStream ack inbox.
		sub, err := d.nc.Subscribe(bus.InboxSubject(deviceKey), func(*nats.Msg) { d.ring(bell) })
		if err != nil {
			return nil, fmt.Errorf("subscribe to the inbox doorbell: %w", err)
		}
		bell.sub = sub
		d.bells[deviceKey] = bell
	}
	l := &listener{ch: make(chan struct{}, 1), d: d, key: deviceKey, bell: bell}
	bell.listeners[l.ch] = struct{}{}
	return l, nil
}

// lost is a counter that grows whenever doorbells may have been lost: the connection's
// reconnects plus the messages the subscription dropped.
func (l *listener) lost() uint64 {
	n := l.d.nc.Stats().Reconnects
	if dropped, err := l.bell.sub.Dropped(); err == nil {
		n += uint64(dropped)
	}
	return n
}

// leave stops the listener; the last one of a device removes its subscription. Later calls
// do nothing.
func (l *listener) leave() {
	l.once.Do(func() {
		d := l.d
		d.mu.Lock()
		defer d.mu.Unlock()
		delete(l.bell.listeners, l.ch)
		if len(l.bell.listeners) == 0 && d.bells[l.key] == l.bell {
			delete(d.bells, l.key)
			_ = l.bell.sub.Unsubscribe() // fails only when the connection is closed, which removed it
		}
	})
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
