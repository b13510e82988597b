package tenants

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"pushgo.dev/gateway/proto/bus"
	apiv1 "pushgo.dev/gateway/proto/gen/pushgo/api/v1"
	busv1 "pushgo.dev/gateway/proto/gen/pushgo/bus/v1"
	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

const (
	// maxCAS bounds the compare-and-set attempts of one change of a tenant or its counts.
	maxCAS = 16
	// missTTL is how long an id that named no tenant is remembered as such, so that a client
	// presenting made-up keys costs a map read, not a KV get, per request. A tenant created
	// meanwhile clears it (the watch delivers the create).
	missTTL = 5 * time.Second
	// maxMisses bounds the memory of remembered misses.
	maxMisses = 10_000
	// keyPrefix starts every API key.
	keyPrefix = "pgk_"
	idBytes   = 16 // tenant id: 32 hex
	keyBytes  = 32 // secret: 256 bits, 64 hex
)

// Config configures a Store.
type Config struct {
	// Defaults are the limits of a tenant without overrides: the gateway's flags (0: off).
	Defaults Limits
	// Streams counts a tenant's live streams for its usage (the stream limiter's count); nil
	// counts 0.
	Streams func(tenantID string) int
	// RetryBudget bounds the retries of one broker call.
	RetryBudget time.Duration
}

// Store keeps the tenants of KV pushgo_tenants. Every instance mirrors the tenant records in
// memory, kept current by a watch of the bucket, so authenticating a request costs a map read
// and one SHA-256. A deleted tenant's key fails on the instance that deleted it before the
// delete is answered, and on every other instance as soon as the watch delivers the delete
// (milliseconds). While the watch is down (broker failover), the mirror is not trusted and
// every lookup reads the bucket. It is safe for concurrent use.
type Store struct {
	kv    jetstream.KeyValue
	meter *bus.UsageMeter
	cfg   Config
	log   *slog.Logger

	mu      sync.RWMutex
	tenants map[string]*entry
	gone    map[string]struct{}  // deleted tenants: final, ids are never reused
	misses  map[string]time.Time // ids that named no tenant, until when
	live    bool                 // the watch has loaded the bucket and is running

	countLocks map[string]chan struct{} // by tenant id (quota.go)
}

type entry struct {
	rec    *busv1.TenantRecord
	rev    uint64
	tenant Tenant
}

// New opens the tenants and usage buckets (provisioned by bus.Provision) and starts mirroring
// the tenants until ctx is done. It returns once the mirror is loaded.
func New(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) (*Store, error) {
	kv, err := js.KeyValue(ctx, bus.BucketTenants)
	if err != nil {
		return nil, fmt.Errorf("tenants bucket: %w", err)
	}
	meter, err := bus.NewUsageMeter(ctx, js, cfg.RetryBudget, log)
	if err != nil {
		return nil, err
	}
	s := &Store{kv: kv, meter: meter, cfg: cfg, log: log,
		tenants: map[string]*entry{}, gone: map[string]struct{}{}, misses: map[string]time.Time{},
		countLocks: map[string]chan struct{}{}}
	synced := make(chan struct{})
	go s.follow(ctx, synced)
	select {
	case <-synced:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, errors.New("watch tenants: initial values not loaded in 30s")
	}
	return s, nil
}

// RunUsage flushes the daily usage counters every few seconds until ctx is done, then once
// more. Cancel its ctx after the servers have stopped, so that the last requests are counted.
func (s *Store) RunUsage(ctx context.Context) { s.meter.Run(ctx, 0) }

// follow applies the bucket's tenant records to the mirror until ctx is done, watching again
// when a watch ends.
func (s *Store) follow(ctx context.Context, synced chan struct{}) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		w, err := s.kv.Watch(ctx, bus.TenantKeys)
		if err != nil {
			s.log.Warn("watch tenants failed; retrying", "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		for e := range w.Updates() {
			if e == nil { // end of the initial values
				s.setLive(true)
				if synced != nil {
					close(synced)
					synced = nil
				}
				continue
			}
			id, ok := bus.TenantIDFromKey(e.Key())
			if !ok {
				continue
			}
			if e.Operation() != jetstream.KeyValuePut {
				s.forget(id)
				continue
			}
			rec := &busv1.TenantRecord{}
			if err := proto.Unmarshal(e.Value(), rec); err != nil {
				s.log.Warn("undecodable tenant record", "key", e.Key(), "err", err)
				continue
			}
			s.apply(rec, e.Revision())
		}
		s.setLive(false)
		_ = w.Stop()
		if ctx.Err() == nil {
			s.log.Warn("tenants watch ended; watching again")
		}
	}
}

func (s *Store) setLive(v bool) {
	s.mu.Lock()
	s.live = v
	s.mu.Unlock()
}

// apply puts a record read at revision rev into the mirror, unless a newer one is there or the
// tenant was deleted.
func (s *Store) apply(rec *busv1.TenantRecord, rev uint64) Tenant {
	t := Tenant{ID: rec.GetTenantId(), Name: rec.GetName(), Limits: effective(rec.GetLimits(), s.cfg.Defaults), store: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, gone := s.gone[t.ID]; gone {
		return t
	}
	if cur := s.tenants[t.ID]; cur != nil && cur.rev >= rev {
		return cur.tenant
	}
	s.tenants[t.ID] = &entry{rec: rec, rev: rev, tenant: t}
	delete(s.misses, t.ID)
	return t
}

// forget removes a deleted tenant for good.
func (s *Store) forget(id string) {
	s.mu.Lock()
	delete(s.tenants, id)
	s.gone[id] = struct{}{}
	s.mu.Unlock()
}

// lookup returns a tenant that exists; false for an unknown or deleted one.
func (s *Store) lookup(ctx context.Context, id string) (*entry, bool, error) {
	s.mu.RLock()
	e, live := s.tenants[id], s.live
	_, gone := s.gone[id]
	missUntil, missed := s.misses[id]
	s.mu.RUnlock()
	switch {
	case gone:
		return nil, false, nil
	case live && e != nil:
		return e, true, nil
	case live && missed && time.Now().Before(missUntil):
		return nil, false, nil
	}
	rec, rev, err := s.get(ctx, id)
	if err != nil {
		s.log.Warn("tenant store unavailable", "err", err)
		return nil, false, unavailable()
	}
	if rec == nil {
		s.mu.Lock()
		if len(s.misses) >= maxMisses {
			clear(s.misses)
		}
		s.misses[id] = time.Now().Add(missTTL)
		s.mu.Unlock()
		return nil, false, nil
	}
	s.apply(rec, rev)
	s.mu.RLock()
	e = s.tenants[id]
	s.mu.RUnlock()
	return e, e != nil, nil
}

// Authenticate returns the tenant whose API key this is: authentication_failed for a
// malformed key, an unknown or deleted tenant or a wrong secret (the same answer for each).
func (s *Store) Authenticate(ctx context.Context, apiKey string) (Tenant, error) {
	id, ok := parseKey(apiKey)
	if !ok {
		return Tenant{}, authFailed()
	}
	e, ok, err := s.lookup(ctx, id)
	if err != nil {
		return Tenant{}, err
	}
	sum := sha256.Sum256([]byte(apiKey))
	if !ok || subtle.ConstantTimeCompare(sum[:], e.rec.GetApiKeyHash()) != 1 {
		return Tenant{}, authFailed()
	}
	return e.tenant, nil
}

func authFailed() *apierr.Error {
	return apierr.New("authentication_failed", "authentication failed: send Authorization: Bearer <api key>")
}

// parseKey returns the tenant id of a well-formed API key.
func parseKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, keyPrefix)
	if !ok || len(rest) != 2*idBytes+1+2*keyBytes || rest[2*idBytes] != '_' {
		return "", false
	}
	id, secret := rest[:2*idBytes], rest[2*idBytes+1:]
	if !isHex(id) || !isHex(secret) {
		return "", false
	}
	return id, true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Create makes a tenant with overrides (nil: none) and returns it with its API key, which is
// not stored and cannot be shown again.
func (s *Store) Create(ctx context.Context, name string, overrides *apiv1.TenantLimits) (*busv1.TenantRecord, string, error) {
	now := nowMillis()
	for range 3 { // ids are 128 random bits; a collision is retried, not expected
		id := randomHex(idBytes)
		key := keyPrefix + id + "_" + randomHex(keyBytes)
		sum := sha256.Sum256([]byte(key))
		rec := &busv1.TenantRecord{TenantId: id, Name: name, ApiKeyHash: sum[:], Limits: overrides, CreatedAt: now, UpdatedAt: now}
		data, err := proto.Marshal(rec)
		if err != nil {
			return nil, "", err
		}
		var rev uint64
		err = bus.Retry(ctx, s.cfg.RetryBudget, func(ctx context.Context) error {
			var err error
			rev, err = s.kv.Create(ctx, bus.TenantKey(id), data)
			return err
		})
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		if err != nil {
			s.log.Warn("tenant store unavailable", "err", err)
			return nil, "", unavailable()
		}
		s.apply(rec, rev)
		return rec, key, nil
	}
	return nil, "", errors.New("could not allocate a tenant id")
}

// Update renames a tenant (name != nil) and/or replaces its overrides (setLimits): tenant_not_found
// when it does not exist.
func (s *Store) Update(ctx context.Context, id string, name *string, setLimits bool, overrides *apiv1.TenantLimits) (*busv1.TenantRecord, error) {
	for range maxCAS {
		rec, rev, err := s.get(ctx, id)
		if err != nil {
			s.log.Warn("tenant store unavailable", "err", err)
			return nil, unavailable()
		}
		if rec == nil {
			return nil, notFound(id)
		}
		if name != nil {
			rec.Name = *name
		}
		if setLimits {
			rec.Limits = overrides
		}
		rec.UpdatedAt = nowMillis()
		data, err := proto.Marshal(rec)
		if err != nil {
			return nil, err
		}
		var next uint64
		err = bus.Retry(ctx, s.cfg.RetryBudget, func(ctx context.Context) error {
			var err error
			next, err = s.kv.Update(ctx, bus.TenantKey(id), data, rev)
			return err
		})
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			s.log.Warn("tenant store unavailable", "err", err)
			return nil, unavailable()
		}
		s.apply(rec, next)
		return rec, nil
	}
	return nil, unavailable()
}

// Delete removes a tenant and its counts: tenant_not_found when it does not exist. Its key
// fails here from the moment Delete returns. Its channels, devices and usage records stay in
// their buckets, invisible (Visible); usage records expire with the usage bucket's TTL.
func (s *Store) Delete(ctx context.Context, id string) error {
	rec, _, err := s.get(ctx, id)
	if err != nil {
		s.log.Warn("tenant store unavailable", "err", err)
		return unavailable()
	}
	if rec == nil {
		return notFound(id)
	}
	if err := bus.Retry(ctx, s.cfg.RetryBudget, func(ctx context.Context) error {
		return s.kv.Delete(ctx, bus.TenantKey(id))
	}); err != nil {
		s.log.Warn("tenant store unavailable", "err", err)
		return unavailable()
	}
	s.forget(id)
	if err := bus.Retry(ctx, s.cfg.RetryBudget, func(ctx context.Context) error {
		return s.kv.Delete(ctx, bus.TenantCountKey(id))
	}); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		s.log.Warn("delete tenant counts", "tenant", id, "err", err)
	}
	return nil
}

// Get reads one tenant from the bucket: tenant_not_found when it does not exist.
func (s *Store) Get(ctx context.Context, id string) (*busv1.TenantRecord, error) {
	rec, _, err := s.get(ctx, id)
	if err != nil {
		s.log.Warn("tenant store unavailable", "err", err)
		return nil, unavailable()
	}
	if rec == nil {
		return nil, notFound(id)
	}
	return rec, nil
}

// List reads every tenant from the bucket, oldest first (ties by id).
func (s *Store) List(ctx context.Context) ([]*busv1.TenantRecord, error) {
	var out []*busv1.TenantRecord
	err := bus.Retry(ctx, s.cfg.RetryBudget, func(ctx context.Context) error {
		out = out[:0]
		w, err := s.kv.Watch(ctx, bus.TenantKeys, jetstream.IgnoreDeletes())
		if err != nil {
			return err
		}
		defer func() { _ = w.Stop() }()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return errors.New("tenants watch closed")
				}
				if e == nil {
					return nil
				}
				rec := &busv1.TenantRecord{}
				if err := proto.Unmarshal(e.Value(), rec); err != nil {
					return fmt.Errorf("decode %s: %w", e.Key(), err)
				}
				out = append(out, rec)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	})
	if err != nil {
		s.log.Warn("tenant store unavailable", "err", err)
		return nil, unavailable()
	}
	slices.SortFunc(out, func(a, b *busv1.TenantRecord) int {
		return cmp.Or(cmp.Compare(a.GetCreatedAt(), b.GetCreatedAt()), strings.Compare(a.GetTenantId(), b.GetTenantId()))
	})
	return out, nil
}

// Usage returns a tenant's usage of the current UTC day (what every instance flushed, plus
// what this one has not flushed yet) and what it owns now: tenant_not_found when it does not
// exist.
func (s *Store) Usage(ctx context.Context, id string) (*apiv1.TenantUsage, error) {
	if _, err := s.Get(ctx, id); err != nil {
		return nil, err
	}
	day := bus.UsageDay(time.Now())
	rec, err := bus.ReadUsage(ctx, s.meter.KV(), id, day, s.cfg.RetryBudget)
	if err != nil {
		s.log.Warn("tenant store unavailable", "err", err)
		return nil, unavailable()
	}
	ops, deliveries := s.meter.Pending(id, day)
	counts, _, err := s.counts(ctx, id)
	if err != nil {
		s.log.Warn("tenant store unavailable", "err", err)
		return nil, unavailable()
	}
	var streams int
	if s.cfg.Streams != nil {
		streams = s.cfg.Streams(id)
	}
	return &apiv1.TenantUsage{TenantId: id, Day: day[:4] + "-" + day[4:6] + "-" + day[6:],
		Ops: rec.GetOps() + ops, Deliveries: rec.GetDeliveries() + deliveries,
		Channels: counts.GetChannels(), Devices: counts.GetDevices(), Streams: uint64(max(streams, 0))}, nil
}

// get reads a tenant record from the bucket (its leader); nil when there is none.
func (s *Store) get(ctx context.Context, id string) (*busv1.TenantRecord, uint64, error) {
	var e jetstream.KeyValueEntry
	err := bus.Retry(ctx, s.cfg.RetryBudget, func(ctx context.Context) error {
		var err error
		e, err = s.kv.Get(ctx, bus.TenantKey(id))
		return err
	})
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	rec := &busv1.TenantRecord{}
	if err := proto.Unmarshal(e.Value(), rec); err != nil {
		return nil, 0, fmt.Errorf("decode tenant %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}

func notFound(id string) *apierr.Error {
	return apierr.Newf("tenant_not_found", "tenant %s does not exist", id)
}

// effective applies overrides over defaults.
func effective(o *apiv1.TenantLimits, d Limits) Limits {
	if o == nil {
		o = &apiv1.TenantLimits{}
	}
	pick := func(v *uint32, def int) int {
		if v == nil {
			return def
		}
		return int(*v)
	}
	return Limits{
		OpsPerSecond:          pick(o.OpsPerSecond, d.OpsPerSecond),
		Channels:              pick(o.Channels, d.Channels),
		Devices:               pick(o.Devices, d.Devices),
		Streams:               pick(o.Streams, d.Streams),
		SubscribersPerChannel: pick(o.SubscribersPerChannel, d.SubscribersPerChannel),
	}
}

// Effective returns the limits in force for overrides (nil: none), as the API shows them.
func (s *Store) Effective(overrides *apiv1.TenantLimits) *apiv1.TenantLimits {
	l := effective(overrides, s.cfg.Defaults)
	u := func(n int) *uint32 { v := uint32(max(n, 0)); return &v }
	return &apiv1.TenantLimits{OpsPerSecond: u(l.OpsPerSecond), Channels: u(l.Channels), Devices: u(l.Devices),
		Streams: u(l.Streams), SubscribersPerChannel: u(l.SubscribersPerChannel)}
}

// StreamLimit returns the effective live-stream limit of a tenant this store holds in memory
// (0: none); false when it holds none, as for a tenant it has not looked up yet. It never calls
// the broker, so the stream limiter may call it under its own bookkeeping.
func (s *Store) StreamLimit(id string) (int, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e := s.tenants[id]; e != nil {
		return e.tenant.Limits.Streams, true
	}
	return 0, false
}
