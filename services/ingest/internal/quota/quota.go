// Package quota enforces what a client may hold (DESIGN.md §8.2): the subscribers of one
// channel. A quota is checked before the write that would exceed it and refused with 403
// quota_exceeded.
package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"pushgo.dev/gateway/proto/bus"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// SubscriberLimitFunc gives the subscribers-per-channel quota of the request's tenant, from its
// context: ok false when there is no tenant (public and private mode). limit is the tenant's
// own quota: 0 means the default (Subscribers.PerChannel), a negative value no quota.
type SubscriberLimitFunc func(ctx context.Context) (limit int, ok bool)

// Subscribers enforces the subscribers-per-channel quota. It is safe for concurrent use; set
// its exported fields before serving.
//
// A channel's subscribers are counted as the subjects of the channel in the subscriptions
// bucket's stream (bus.CountSubjects): one stream-info request to the stream leader, no
// consumer, no key listing. An unsubscribe is a purge whose marker expires after
// bus.SubsMarkerTTL, so a device that unsubscribed keeps counting for up to that long (its
// slot is freed then). The check and the subscribe's write are not atomic: concurrent
// subscribes to a channel one short of its quota may all pass, overshooting it by at most the
// number of them in flight. Re-subscribing a device that is already subscribed is never refused.
type Subscribers struct {
	// PerChannel is the quota; 0 is none.
	PerChannel int
	// Limit, when set, gives a tenant's own quota (hosted mode).
	Limit SubscriberLimitFunc

	nc     *nats.Conn
	subs   jetstream.KeyValue
	budget time.Duration
	log    *slog.Logger
}

// NewSubscribers returns the quota over the subscriptions bucket; broker calls are retried for
// up to budget.
func NewSubscribers(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, perChannel int, budget time.Duration, log *slog.Logger) (*Subscribers, error) {
	subs, err := js.KeyValue(ctx, bus.BucketSubs)
	if err != nil {
		return nil, fmt.Errorf("subscriptions bucket: %w", err)
	}
	return &Subscribers{PerChannel: perChannel, nc: nc, subs: subs, budget: budget, log: log}, nil
}

// CheckSubscribe returns nil when deviceKey may subscribe to channelID: the channel is below
// its quota or the device is subscribed already. Otherwise it returns 403 quota_exceeded, or
// 503 unavailable when the broker cannot answer.
func (q *Subscribers) CheckSubscribe(ctx context.Context, channelID, deviceKey string) error {
	limit := q.PerChannel
	if q.Limit != nil {
		if l, ok := q.Limit(ctx); ok && l != 0 {
			limit = l
		}
	}
	if limit <= 0 {
		return nil
	}
	var n int
	if err := bus.Retry(ctx, q.budget, func(ctx context.Context) error {
		var err error
		n, err = bus.CountSubjects(ctx, q.nc, bus.KVStream(bus.BucketSubs), bus.ChannelSubsSubjects(channelID))
		return err
	}); err != nil {
		return q.unavailable(err)
	}
	if n < limit {
		return nil
	}
	// At the quota: only a device already subscribed may go on (its write adds no subscriber).
	err := bus.Retry(ctx, q.budget, func(ctx context.Context) error {
		_, err := q.subs.Get(ctx, bus.SubKey(channelID, deviceKey))
		return err
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return apierr.Newf("quota_exceeded", "channel %s has its quota of %d subscribers", channelID, limit)
	default:
		return q.unavailable(err)
	}
}

func (q *Subscribers) unavailable(err error) *apierr.Error {
	q.log.Warn("broker unavailable", "err", err)
	e := apierr.New("unavailable", "the subscription store is unavailable; retry later")
	e.RetryAfter = 5
	return e
}
