// Package devices keeps devices (KV pushgo_devices) and channel subscriptions (KV pushgo_subs)
// for ingest: registration, route changes, subscribe and unsubscribe, with PushGo's shapes and
// codes (reference/pushgo-gateway.md §4.2–4.3). Record changes use compare-and-set on the
// record's revision, so concurrent calls for one device converge.
//
// Webhook secrets are stored sealed (package secretbox, bound to webhook.SecretBinding of the
// device key). A record holding a clear secret (written by an older build, or by an ingest
// without a key) or one sealed with an old key is sealed again with the current key the first
// time this store reads it, and Reseal does so for every device at start: no one-time
// migration step is needed.
package devices

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/proto/secretbox"
	"pushgo.dev/gateway/proto/webhook"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/channels"
	"pushgo.dev/gateway/services/ingest/internal/createlimit"
	"pushgo.dev/gateway/services/ingest/internal/tenants"
	"pushgo.dev/gateway/services/ingest/internal/validate"
)

// maxCAS bounds the compare-and-set retries of one change.
const maxCAS = 16

// SubscriberQuota decides whether a device may subscribe to a channel (the quota package's
// Subscribers): nil or an *apierr.Error such as quota_exceeded.
type SubscriberQuota interface {
	CheckSubscribe(ctx context.Context, channelID, deviceKey string) error
}

// Store is safe for concurrent use.
type Store struct {
	// Quota, when set (before serving), is checked before a subscribe to an existing channel.
	Quota SubscriberQuota

	devices  jetstream.KeyValue
	subs     jetstream.KeyValue
	channels *channels.Store
	urls     webhook.URLPolicy
	budget   time.Duration
	log      *slog.Logger
	creates  *createlimit.Creates
	secrets  *secretbox.Box
}

// New returns a store over the device and subscription buckets. urls decides which webhook
// URLs are accepted; creates is the per-address budget a new device key is taken from (nil:
// no limit); secrets seals webhook secrets (nil: they are stored in clear).
func New(ctx context.Context, js jetstream.JetStream, chans *channels.Store, urls webhook.URLPolicy, budget time.Duration, log *slog.Logger, creates *createlimit.Creates, secrets *secretbox.Box) (*Store, error) {
	devs, err := js.KeyValue(ctx, bus.BucketDevices)
	if err != nil {
		return nil, fmt.Errorf("devices bucket: %w", err)
	}
	subs, err := js.KeyValue(ctx, bus.BucketSubs)
	if err != nil {
		return nil, fmt.Errorf("subscriptions bucket: %w", err)
	}
	return &Store{devices: devs, subs: subs, channels: chans, urls: urls, budget: budget, log: log, creates: creates, secrets: secrets}, nil
}

// Register issues or confirms a device key: a missing or unknown key gets a new one (route
// private); a known key with the same platform is confirmed; a known key with another platform
// is replaced by a new one and revoked, and a later call with the revoked key gets the same
// replacement.
func (s *Store) Register(ctx context.Context, req *apiv1.RegisterDeviceRequest) (*apiv1.RegisterDeviceResponse, error) {
	platform, verr := validate.Platform(req.GetPlatform())
	if verr != nil {
		return nil, verr
	}
	reason := "device_key_missing"
	if req.DeviceKey != nil && req.GetDeviceKey() != "" {
		reason = "device_key_not_found"
		if key, verr := validate.DeviceKey(req.GetDeviceKey()); verr == nil {
			given := key
			rec, rev, err := s.load(ctx, key)
			if err != nil {
				return nil, err
			}
			// Follow replacements: the stale key of a re-registered device leads to its new one.
			for hops := 0; rec != nil && rec.GetReplacedBy() != "" && hops < 8; hops++ {
				key = rec.GetReplacedBy()
				if rec, rev, err = s.load(ctx, key); err != nil {
					return nil, err
				}
			}
			switch {
			case rec != nil && rec.GetPlatform() == platform:
				return &apiv1.RegisterDeviceResponse{DeviceKey: key, Platform: platform, ChannelType: rec.GetChannelType(),
					IssuedNewKey: given != key, IssueReason: issueReason(given != key, "platform_mismatch")}, nil
			case rec != nil:
				return s.replace(ctx, rec, rev, platform)
			}
		}
	}
	quota, err := tenants.Reserve(ctx, tenants.Devices)
	if err != nil {
		return nil, err
	}
	rec, err := s.create(ctx, platform, tenants.OwnerID(ctx))
	if err != nil {
		quota.Release(ctx)
		return nil, err
	}
	return &apiv1.RegisterDeviceResponse{DeviceKey: rec.GetDeviceKey(), IssuedNewKey: true, IssueReason: &reason,
		Platform: platform, ChannelType: rec.GetChannelType()}, nil
}

func issueReason(issued bool, reason string) *string {
	if !issued {
		return nil
	}
	return &reason
}

// replace gives a device on a new platform a new key and revokes the old one. The new key
// belongs to the old one's tenant and takes no quota: it is the same device.
func (s *Store) replace(ctx context.Context, old *busv1.DeviceRecord, rev uint64, platform string) (*apiv1.RegisterDeviceResponse, error) {
	fresh, err := s.create(ctx, platform, old.GetTenantId())
	if err != nil {
		return nil, err
	}
	old.ReplacedBy, old.UpdatedAt = fresh.GetDeviceKey(), time.Now().UnixMilli()
	if err := s.update(ctx, old, rev); err != nil {
		// Lost a race with another replacement: follow the winner instead.
		if errors.Is(err, jetstream.ErrKeyExists) {
			return s.Register(ctx, &apiv1.RegisterDeviceRequest{Platform: platform, DeviceKey: &old.DeviceKey})
		}
		return nil, err
	}
	reason := "platform_mismatch"
	return &apiv1.RegisterDeviceResponse{DeviceKey: fresh.GetDeviceKey(), IssuedNewKey: true, IssueReason: &reason,
		Platform: platform, ChannelType: fresh.GetChannelType()}, nil
}

// create makes a device with a new key owned by tenantID ("" for none), taken from the client
// address's create budget (rate_limited beyond it): only calls that issue a key count, not
// those confirming one.
func (s *Store) create(ctx context.Context, platform, tenantID string) (*busv1.DeviceRecord, error) {
	if err := s.creates.Check(ctx); err != nil {
		return nil, err
	}
	now := time.Now().UnixMilli()
	rec := &busv1.DeviceRecord{DeviceKey: newKey(), Platform: platform, ChannelType: validate.RoutePrivate, CreatedAt: now, UpdatedAt: now,
		TenantId: tenantID}
	data, err := proto.Marshal(rec)
	if err != nil {
		return nil, err
	}
	if err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		_, err := s.devices.Create(ctx, rec.GetDeviceKey(), data)
		return err
	}); err != nil {
		return nil, s.unavailable(err)
	}
	return rec, nil
}

// SetRoute changes how pushes reach a device. A webhook gets a new signing secret, returned
// this once.
func (s *Store) SetRoute(ctx context.Context, req *apiv1.SetRouteRequest) (*apiv1.SetRouteResponse, error) {
	var rec *busv1.DeviceRecord
	var rev uint64
	r, verr := validate.SetRoute(req, func(key string) (string, *apierr.Error) {
		var err error
		rec, rev, err = s.mustLoad(ctx, key)
		if err != nil {
			return "", apierr.FromError(err)
		}
		return rec.GetPlatform(), nil
	})
	if verr != nil {
		return nil, verr
	}
	if r.ChannelType == validate.RouteWebhook {
		if err := s.urls.CheckURL(ctx, r.Token); err != nil {
			if errors.Is(err, webhook.ErrPrivateAddress) {
				return nil, apierr.Newf("webhook_url_not_allowed", "webhook URLs to loopback or private networks are refused: %v", err)
			}
			return nil, apierr.Newf("invalid_webhook_url", "provider_token is not a usable webhook URL: %v", err)
		}
	}
	resp := &apiv1.SetRouteResponse{DeviceKey: r.DeviceKey, ChannelType: r.ChannelType}
	for range maxCAS {
		rec.ChannelType, rec.ProviderToken, rec.WebhookSecret = r.ChannelType, r.Token, ""
		rec.RouteInvalid, rec.RouteInvalidAt = "", 0 // a route set again is tried again
		var secret string
		if r.ChannelType == validate.RouteWebhook {
			secret = webhook.NewSecret()
			sealed, err := s.secrets.Seal(secret, webhook.SecretBinding(r.DeviceKey))
			if err != nil {
				return nil, fmt.Errorf("seal webhook secret: %w", err)
			}
			rec.WebhookSecret = sealed
		}
		rec.UpdatedAt = time.Now().UnixMilli()
		err := s.update(ctx, rec, rev)
		if err == nil {
			if r.Token != "" {
				resp.ProviderToken = &r.Token
			}
			if secret != "" {
				resp.WebhookSecret = &secret
			}
			return resp, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		if rec, rev, err = s.mustLoad(ctx, r.DeviceKey); err != nil {
			return nil, err
		}
	}
	return nil, s.unavailable(errors.New("too many concurrent changes of one device"))
}

// Subscribe adds a device to an existing channel (channel_id + password) or to a new one
// (channel_name + password). Subscribing again is not an error.
func (s *Store) Subscribe(ctx context.Context, req *apiv1.SubscribeRequest) (*apiv1.SubscribeResponse, error) {
	q, verr := validate.Subscribe(req)
	if verr != nil {
		return nil, verr
	}
	if _, _, err := s.mustLoad(ctx, q.DeviceKey); err != nil {
		return nil, err
	}
	resp := &apiv1.SubscribeResponse{Subscribed: true}
	if q.ChannelID == "" {
		ch, err := s.channels.Create(ctx, q.ChannelName, q.Password)
		if err != nil {
			return nil, err
		}
		resp.ChannelId, resp.ChannelName, resp.Created = ch.GetChannelId(), ch.GetName(), true
	} else {
		ch, err := s.channels.Authorize(ctx, q.ChannelID, q.Password)
		if err != nil {
			return nil, err
		}
		resp.ChannelId, resp.ChannelName = ch.GetChannelId(), ch.GetName()
		// A channel created just now has no subscribers yet: only existing ones are checked.
		if s.Quota != nil {
			if err := s.Quota.CheckSubscribe(ctx, resp.GetChannelId(), q.DeviceKey); err != nil {
				return nil, err
			}
		}
	}
	data, err := proto.Marshal(&busv1.SubscriptionRecord{ChannelId: resp.GetChannelId(), DeviceKey: q.DeviceKey, CreatedAt: time.Now().UnixMilli()})
	if err != nil {
		return nil, err
	}
	if err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		_, err := s.subs.Put(ctx, bus.SubKey(resp.GetChannelId(), q.DeviceKey), data)
		return err
	}); err != nil {
		return nil, s.unavailable(err)
	}
	return resp, nil
}

// Unsubscribe removes a device from a channel; removed tells whether it was subscribed. The
// removal is a purge whose marker (which tells dispatch's watchers) expires after
// bus.SubsMarkerTTL, after which the subscription no longer counts toward the channel's quota.
func (s *Store) Unsubscribe(ctx context.Context, req *apiv1.UnsubscribeRequest) (*apiv1.UnsubscribeResponse, error) {
	key, channelID, verr := validate.Unsubscribe(req)
	if verr != nil {
		return nil, verr
	}
	if _, _, err := s.mustLoad(ctx, key); err != nil {
		return nil, err
	}
	subKey := bus.SubKey(channelID, key)
	var removed bool
	err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		_, err := s.subs.Get(ctx, subKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		removed = true
		return s.subs.Purge(ctx, subKey, jetstream.PurgeTTL(bus.SubsMarkerTTL))
	})
	if err != nil {
		return nil, s.unavailable(err)
	}
	return &apiv1.UnsubscribeResponse{ChannelId: channelID, Removed: removed}, nil
}

// Check returns nil when deviceKey names a current (not replaced) device.
func (s *Store) Check(ctx context.Context, deviceKey string) error {
	_, _, err := s.mustLoad(ctx, deviceKey)
	return err
}

// Owner returns the tenant id of a current device ("" for none), with Check's errors; a
// device-keyed route passes it to tenants.OwnerTenant for its tenant's limits.
func (s *Store) Owner(ctx context.Context, deviceKey string) (string, error) {
	rec, _, err := s.mustLoad(ctx, deviceKey)
	return rec.GetTenantId(), err
}

// mustLoad loads a current device: device_key_not_found when unknown or replaced.
func (s *Store) mustLoad(ctx context.Context, key string) (*busv1.DeviceRecord, uint64, error) {
	rec, rev, err := s.load(ctx, key)
	if err != nil {
		return nil, 0, err
	}
	if rec == nil {
		return nil, 0, apierr.New("device_key_not_found", "device_key is not registered; call /device/register")
	}
	if rec.GetReplacedBy() != "" {
		return nil, 0, apierr.New("device_key_not_found", "device_key was replaced when the device registered with another platform; use the new key")
	}
	return rec, rev, nil
}

// load reads a device record; nil when there is none, or when it is not visible to the
// request (another tenant's device, or a deleted tenant's: tenants.Visible), so that such a
// device is answered exactly as an unknown one on every route.
func (s *Store) load(ctx context.Context, key string) (*busv1.DeviceRecord, uint64, error) {
	var e jetstream.KeyValueEntry
	err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		var err error
		e, err = s.devices.Get(ctx, key)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, s.unavailable(err)
	}
	rec := &busv1.DeviceRecord{}
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		return nil, 0, fmt.Errorf("decode device %s: %w", key, err)
	}
	rev := e.Revision()
	if s.secrets.NeedsReseal(rec.GetWebhookSecret()) {
		rev = s.reseal(ctx, rec, rev)
	}
	if visible, err := tenants.Visible(ctx, rec.GetTenantId()); err != nil {
		return nil, 0, err
	} else if !visible {
		return nil, 0, nil
	}
	return rec, rev, nil
}

// reseal seals rec's webhook secret with the current key and writes it if the record is still
// at rev, returning the record's revision afterwards. It is opportunistic: when the write
// fails (a concurrent change, the broker away) or the secret does not open, rec and rev are
// left as read, and a later read tries again.
func (s *Store) reseal(ctx context.Context, rec *busv1.DeviceRecord, rev uint64) uint64 {
	key := rec.GetDeviceKey()
	secret, err := s.secrets.Open(rec.GetWebhookSecret(), webhook.SecretBinding(key))
	if err != nil {
		s.log.Error("stored webhook secret does not open; deliveries to this device fail until its route is set again", "device", key, "err", err)
		return rev
	}
	sealed, err := s.secrets.Seal(secret, webhook.SecretBinding(key))
	if err != nil {
		s.log.Warn("seal webhook secret", "device", key, "err", err)
		return rev
	}
	next := proto.Clone(rec).(*busv1.DeviceRecord)
	next.WebhookSecret = sealed
	data, err := proto.Marshal(next)
	if err != nil {
		return rev
	}
	newRev, err := s.devices.Update(ctx, key, data, rev)
	if err != nil {
		s.log.Debug("webhook secret not resealed now; a later read retries", "device", key, "err", err)
		return rev
	}
	rec.WebhookSecret = sealed
	return newRev
}

// Reseal seals, with the current key, every stored webhook secret that is clear or sealed with
// an old key, and returns how many it sealed and how many it had to leave (a write that lost
// a race or met a broker failure, a secret that does not open; a later read retries). Ingest
// runs it once at start, in the background, so that devices no request touches are sealed
// too; several instances running it at once converge (each write is a compare-and-set). It
// stops early when ctx is done.
func (s *Store) Reseal(ctx context.Context) (sealed, left int, err error) {
	if s.secrets == nil {
		return 0, 0, nil
	}
	w, err := s.devices.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return 0, 0, fmt.Errorf("reseal: watch devices: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return sealed, left, ctx.Err()
		case e = <-w.Updates():
		}
		if e == nil { // every current value seen
			return sealed, left, nil
		}
		rec := &busv1.DeviceRecord{}
		if proto.Unmarshal(e.Value(), rec) != nil || !s.secrets.NeedsReseal(rec.GetWebhookSecret()) {
			continue
		}
		if s.reseal(ctx, rec, e.Revision()) != e.Revision() {
			sealed++
		} else {
			left++
		}
	}
}

// update writes rec if the stored revision is still rev; jetstream.ErrKeyExists otherwise.
func (s *Store) update(ctx context.Context, rec *busv1.DeviceRecord, rev uint64) error {
	data, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	err = bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		_, err := s.devices.Update(ctx, rec.GetDeviceKey(), data, rev)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return jetstream.ErrKeyExists
	}
	if err != nil {
		return s.unavailable(err)
	}
	return nil
}

func (s *Store) unavailable(err error) *apierr.Error {
	s.log.Warn("broker unavailable", "err", err)
	e := apierr.New("unavailable", "the device store is unavailable; retry later")
	e.RetryAfter = 5
	return e
}

// newKey returns a new device key: 32 random lowercase hex characters.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
