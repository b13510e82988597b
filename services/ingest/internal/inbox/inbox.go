// Package inbox reads devices' inboxes in PUSHGO_INBOX (one subject per device): pull the
// oldest items without removing them, remove one by its delivery id, and follow an inbox live
// for the SSE and WebSocket streams (follow.go: no JetStream consumer, a core NATS doorbell).
// Removing deletes the message from the stream, so an acked item never comes back, through
// any of them.
package inbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Inbox is safe for concurrent use.
type Inbox struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	opts   Options
	bells  *doorbells
	settle []time.Duration // defaultSettle; tests change it

	// Tests only: testHookBacklogRead runs after Follow's first read of the backlog, before it
	// waits for anything new; testHookIdle each time Follow waits with no re-read planned.
	testHookBacklogRead, testHookIdle func()
}

// Options tune an Inbox; the zero value is the defaults.
type Options struct {
	// Resync is how often Follow reads the inbox again although no doorbell rang (DefaultResync
	// when 0): the safety net for a doorbell that was lost.
	Resync time.Duration
}

// New returns a reader of PUSHGO_INBOX.
func New(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, o Options) (*Inbox, error) {
	st, err := js.Stream(ctx, bus.StreamInbox)
	if err != nil {
		return nil, fmt.Errorf("inbox stream: %w", err)
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	return &Inbox{nc: nc, js: js, stream: st, opts: o, bells: newDoorbells(nc), settle: defaultSettle}, nil
}

// Pull returns up to limit items of a device's inbox, oldest first, without removing them. It
// reads from the stream leader, so an item acked before the call is never returned.
func (b *Inbox) Pull(ctx context.Context, deviceKey string, limit int) ([]*apiv1.InboxItem, error) {
	items := []*apiv1.InboxItem{}
	err := bus.LeaderRange(ctx, b.nc, bus.StreamInbox, bus.InboxSubject(deviceKey), 1, limit, func(m *bus.Msg) error {
		item, err := decode(m.Seq, m.Data)
		if err != nil {
			return err
		}
		items = append(items, item)
		return nil
	})
	if err != nil {
		return nil, unavailable(err)
	}
	return items, nil
}

// Ack removes the item with deliveryID from a device's inbox; false when it is not there.
func (b *Inbox) Ack(ctx context.Context, deviceKey, deliveryID string) (bool, error) {
	var seq uint64
	errFound := errors.New("found")
	err := bus.LeaderRange(ctx, b.nc, bus.StreamInbox, bus.InboxSubject(deviceKey), 1, 0, func(m *bus.Msg) error {
		if m.Header.Get(jetstream.MsgIDHeader) == deliveryID {
			seq = m.Seq
			return errFound
		}
		return nil
	})
	if err != nil && !errors.Is(err, errFound) {
		return false, unavailable(err)
	}
	if seq == 0 {
		return false, nil
	}
	if err := b.stream.DeleteMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return false, nil // removed meanwhile by another ack
		}
		return false, unavailable(err)
	}
	return true, nil
}

func decode(seq uint64, raw []byte) (*apiv1.InboxItem, error) {
	msg := &busv1.InboxMessage{}
	if err := proto.Unmarshal(raw, msg); err != nil {
		return nil, fmt.Errorf("decode inbox item %d: %w", seq, err)
	}
	payload := msg.GetData()
	if payload == nil {
		payload = map[string]string{}
	}
	// The delivery id is stored once, beside the data map it belongs to.
	payload["delivery_id"] = msg.GetDeliveryId()
	return &apiv1.InboxItem{DeliveryId: msg.GetDeliveryId(), Seq: seq, Payload: payload}, nil
}

func unavailable(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	e := apierr.New("unavailable", "the inbox is unavailable; retry later")
	e.RetryAfter = 5
	return errors.Join(e, err)
}
