// Package channels creates channels and authorises requests against them. A channel's password
// is stored only as a salted argon2id hash; a successful verification is remembered in memory
// as a keyed MAC of (channel, password), so repeated requests do not pay the hash again. A
// wrong password is never remembered as good, and concurrent first requests for one channel
// share one verification.
//
// Hashing is the expensive part (argon2id holds 19 MiB while it runs), so the store applies the
// hostile-client limits of DESIGN.md §8.2 around it (Guards): every hash runs in the bounded
// hashing pool (503 busy when no slot comes free within 1 s), password checks are counted per
// channel × client address (429 too_many_attempts while locked out; nothing is hashed then),
// and channel creates are counted per client address (429 rate_limited). The order in
// Authorize is: unknown channel (404, never counted), the verified-credential cache (a password
// proven right is accepted whatever the counters say), the attempt budget, the pool, the hash.
package channels

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/singleflight"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/attempts"
	"pushgo.dev/gateway/services/ingest/internal/createlimit"
	"pushgo.dev/gateway/services/ingest/internal/hashpool"
	"pushgo.dev/gateway/services/ingest/internal/tenants"
)

const (
	// cacheTTL is how long a channel record (and a verified password) is trusted before the
	// record is read again. Channels are immutable today; the TTL bounds staleness if that
	// changes.
	cacheTTL = 5 * time.Minute
	// cacheMax bounds the memory of the cache; beyond it an arbitrary entry is evicted.
	cacheMax = 100_000
)

// Store reads and writes pushgo_channels. It is safe for concurrent use.
type Store struct {
	kv     jetstream.KeyValue
	budget time.Duration
	log    *slog.Logger
	macKey []byte

	// verify checks a password against a stored hash (verifyPassword; tests count calls).
	verify func(hash, password string) (bool, error)

	guards Guards

	mu    sync.Mutex
	cache map[string]*entry
	sf    singleflight.Group
}

// Guards are the hostile-client limits the store applies; a nil field is that limit off.
type Guards struct {
	// Hashes bounds the password hashes computed at once (on create and on verification).
	Hashes *hashpool.Pool
	// Attempts counts password checks per channel × client address.
	Attempts *attempts.Guard
	// Creates is the per-address budget of channel creates.
	Creates *createlimit.Creates
}

type entry struct {
	rec     *busv1.ChannelRecord
	fetched time.Time
	good    []byte // MAC of the last verified password, nil when none
}

// New returns a store over the channels bucket; broker calls are retried within budget.
func New(ctx context.Context, js jetstream.JetStream, budget time.Duration, log *slog.Logger, guards Guards) (*Store, error) {
	kv, err := js.KeyValue(ctx, bus.BucketChannels)
	if err != nil {
		return nil, fmt.Errorf("channels bucket: %w", err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &Store{kv: kv, budget: budget, log: log, macKey: key, verify: verifyPassword, guards: guards, cache: map[string]*entry{}}, nil
}

// Create makes a channel with a new random id, owned by the request's tenant (hosted mode):
// rate_limited when the client address in ctx has used its create budget, quota_exceeded when
// the tenant owns its limit of channels, busy when no hashing slot came free, unavailable when
// the broker does not answer.
func (s *Store) Create(ctx context.Context, name, password string) (rec *busv1.ChannelRecord, err error) {
	if err := s.guards.Creates.Check(ctx); err != nil {
		return nil, err
	}
	var hash string
	if err := s.guards.Hashes.Do(ctx, func() { hash = hashPassword(password) }); err != nil {
		return nil, hashError(err)
	}
	quota, err := tenants.Reserve(ctx, tenants.Channels)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			quota.Release(ctx)
		}
	}()
	rec = &busv1.ChannelRecord{Name: name, PasswordHash: hash, CreatedAt: time.Now().UnixMilli(),
		TenantId: tenants.OwnerID(ctx)}
	for range 3 { // ids are 128 random bits; a collision is retried, not expected
		rec.ChannelId = newChannelID()
		data, err := proto.Marshal(rec)
		if err != nil {
			return nil, err
		}
		err = bus.Retry(ctx, s.budget, func(ctx context.Context) error {
			_, err := s.kv.Create(ctx, rec.ChannelId, data)
			return err
		})
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			return nil, s.unavailable(err)
		}
		return rec, nil
	}
	return nil, errors.New("could not allocate a channel id")
}

// Authorize checks that channelID exists and password is its password: channel_not_found,
// password_mismatch, too_many_attempts (the client address in ctx is locked out of the
// channel), busy (no hashing slot) or unavailable otherwise. It returns the channel's record.
//
// A channel that does not exist, or another tenant's (hosted mode), is answered exactly as an
// unknown one before any counting and before its password is looked at, so neither a lockout
// nor a timing tells anything about a channel the caller cannot see.
func (s *Store) Authorize(ctx context.Context, channelID, password string) (*busv1.ChannelRecord, error) {
	e, err := s.lookup(ctx, channelID)
	if err != nil {
		return nil, err
	}
	if visible, err := tenants.Visible(ctx, e.rec.GetTenantId()); err != nil {
		return nil, err
	} else if !visible {
		return nil, notFound(channelID)
	}
	m := hmac.New(sha256.New, s.macKey)
	m.Write([]byte(channelID))
	m.Write([]byte{0})
	m.Write([]byte(password))
	mac := m.Sum(nil)

	s.mu.Lock()
	good := e.good
	s.mu.Unlock()
	if good != nil && hmac.Equal(good, mac) {
		return e.rec, nil
	}
	v, err, _ := s.sf.Do(string(mac), func() (any, error) {
		// One verification costs one check of the budget, however many requests with the same
		// password share it: a client that sends its first requests to a channel in parallel
		// must not lock itself out, while every distinct guess still costs one.
		if err := s.guards.Attempts.Check(ctx, channelID); err != nil {
			return nil, err
		}
		// The callers sharing this verification must not fail because the first one left: the
		// wait for a slot is bounded by the pool anyway.
		var ok bool
		var verr error
		if err := s.guards.Hashes.Do(context.WithoutCancel(ctx), func() { ok, verr = s.verify(e.rec.GetPasswordHash(), password) }); err != nil {
			return nil, hashError(err)
		}
		return ok, verr
	})
	if ae, ok := apierr.As(err); ok {
		return nil, ae // busy, too_many_attempts
	}
	if err != nil {
		return nil, fmt.Errorf("verify password of %s: %w", channelID, err)
	}
	if !v.(bool) {
		s.guards.Attempts.Failed(ctx, channelID)
		return nil, apierr.New("password_mismatch", "the password does not match the channel's")
	}
	s.guards.Attempts.Succeeded(ctx, channelID)
	s.mu.Lock()
	e.good = mac
	s.mu.Unlock()
	return e.rec, nil
}

// lookup returns the cached record of a channel, reading it when missing or stale.
func (s *Store) lookup(ctx context.Context, channelID string) (*entry, error) {
	now := time.Now()
	s.mu.Lock()
	e := s.cache[channelID]
	s.mu.Unlock()
	if e != nil && now.Sub(e.fetched) < cacheTTL {
		return e, nil
	}
	var kve jetstream.KeyValueEntry
	err := bus.Retry(ctx, s.budget, func(ctx context.Context) error {
		var err error
		kve, err = s.kv.Get(ctx, channelID)
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, notFound(channelID)
	}
	if err != nil {
		return nil, s.unavailable(err)
	}
	rec := &busv1.ChannelRecord{}
	if err := proto.Unmarshal(kve.Value(), rec); err != nil {
		return nil, fmt.Errorf("decode channel %s: %w", channelID, err)
	}
	fresh := &entry{rec: rec, fetched: now}
	s.mu.Lock()
	if old := s.cache[channelID]; old != nil && old.rec.GetPasswordHash() == rec.GetPasswordHash() {
		fresh.good = old.good // same password hash: what verified before still does
	}
	if len(s.cache) >= cacheMax {
		for k := range s.cache {
			delete(s.cache, k)
			break
		}
	}
	s.cache[channelID] = fresh
	s.mu.Unlock()
	return fresh, nil
}

// hashError is the answer to a hash that could not get a pool slot.
func hashError(err error) error {
	if errors.Is(err, hashpool.ErrBusy) {
		e := apierr.New("busy", "the gateway is busy checking passwords; retry in a second")
		e.RetryAfter = 1
		return e
	}
	return err // the caller's context ended
}

// notFound is the answer for an unknown channel, and for another tenant's.
func notFound(channelID string) *apierr.Error {
	return apierr.Newf("channel_not_found", "channel %s does not exist", channelID)
}

func (s *Store) unavailable(err error) *apierr.Error {
	s.log.Warn("broker unavailable", "err", err)
	e := apierr.New("unavailable", "the channel store is unavailable; retry later")
	e.RetryAfter = 5
	return e
}
