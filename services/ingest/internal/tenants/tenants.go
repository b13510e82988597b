// Package tenants is the hosted mode of ingest (DESIGN.md §8.1): the tenants of KV
// pushgo_tenants, their API keys, the authentication of every request (Gate), per-tenant
// quotas of channels and devices, daily usage counters, and isolation.
//
// The seam is the request context. The Gate authenticates a request once and records the
// result in its context; the code below it asks the context, never a flag:
//
//   - FromContext: the request's tenant and its effective Limits (for the rate and stream
//     limiters);
//   - Visible: whether a channel or device record with a given owner exists for this request
//     (another tenant's record is answered exactly as an unknown one);
//   - OwnerID and Reserve: the owner to stamp on a new channel or device and its quota;
//   - CountOp: the daily op counter.
//
// Without a Gate (public and private mode) the context carries nothing: every record without
// an owner is visible, no quota applies and nothing is counted, exactly as before hosted mode.
//
// API keys are "pgk_<tenant_id>_<secret>" with a 256-bit random secret, shown once and stored
// only as their SHA-256. A slow password hash (argon2id, as for channel passwords) protects
// secrets a person chose, which can be guessed; a 256-bit random secret cannot be, even from
// its hash, so one SHA-256 is as safe and costs a microsecond instead of tens of milliseconds
// and megabytes per request. The tenant id in the key makes the lookup one map read (or one
// KV get).
package tenants

import (
	"context"
	"time"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// Limits are a tenant's effective limits: its overrides over the gateway's flags. 0 means no
// limit.
type Limits struct {
	// OpsPerSecond bounds the event ops per second of the whole tenant.
	OpsPerSecond int
	// Channels and Devices bound what the tenant may own (403 quota_exceeded).
	Channels int
	Devices  int
	// Streams bounds the live SSE and WebSocket streams of the tenant's devices.
	Streams int
	// SubscribersPerChannel bounds the subscribers of each of the tenant's channels.
	SubscribersPerChannel int
}

// Tenant is the authenticated tenant of a request.
type Tenant struct {
	ID     string
	Name   string
	Limits Limits

	store *Store // nil for a Tenant made outside a Store (tests): no quota, no counting
}

// Resource is what a quota counts.
type Resource int

// Resources with a per-tenant quota.
const (
	Channels Resource = iota
	Devices
)

func (r Resource) String() string {
	if r == Channels {
		return "channels"
	}
	return "devices"
}

// scope is what the Gate learnt about a request.
type scope struct {
	store  *Store
	tenant *Tenant // the tenant of a tenant-keyed route
	admin  bool    // an admin route, authenticated with the admin token
}

type scopeKey struct{}

// WithTenant returns ctx carrying t as the request's tenant.
func WithTenant(ctx context.Context, t Tenant) context.Context {
	return context.WithValue(ctx, scopeKey{}, &scope{store: t.store, tenant: &t})
}

// withDeviceScope marks a device-keyed route of a hosted gateway: the device key is the
// credential, and records of deleted tenants are not visible.
func withDeviceScope(ctx context.Context, s *Store) context.Context {
	return context.WithValue(ctx, scopeKey{}, &scope{store: s})
}

func withAdmin(ctx context.Context, s *Store) context.Context {
	return context.WithValue(ctx, scopeKey{}, &scope{store: s, admin: true})
}

func scopeOf(ctx context.Context) *scope {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	return s
}

// FromContext returns the request's tenant with its effective limits; false in public and
// private mode and on the device-keyed and admin routes of hosted mode.
func FromContext(ctx context.Context) (Tenant, bool) {
	if s := scopeOf(ctx); s != nil && s.tenant != nil {
		return *s.tenant, true
	}
	return Tenant{}, false
}

// authenticated reports whether a Gate already authenticated the request in ctx (the REST
// middleware does it first; the gRPC interceptor then need not do it again). A context value
// cannot come from a network client, so this cannot be forged.
func authenticated(ctx context.Context) bool { return scopeOf(ctx) != nil }

// OwnerID is the owner to record on a channel or device created by the request: its tenant's
// id, "" without one.
func OwnerID(ctx context.Context) string {
	if t, ok := FromContext(ctx); ok {
		return t.ID
	}
	return ""
}

// Visible reports whether a channel or device record owned by owner ("" for none) exists as far
// as the request in ctx is concerned:
//   - on a tenant's request, only its own records;
//   - on a device-keyed route of a hosted gateway (the device key is the credential), records
//     of tenants that still exist, and records without an owner;
//   - otherwise (public and private mode), only records without an owner.
//
// Callers answer a record that is not visible exactly as an unknown one. The error is the
// broker's (unavailable), from looking up a tenant this process has not seen.
func Visible(ctx context.Context, owner string) (bool, error) {
	s := scopeOf(ctx)
	switch {
	case s != nil && s.tenant != nil:
		return owner == s.tenant.ID, nil
	case s != nil && !s.admin && s.store != nil && owner != "":
		_, ok, err := s.store.lookup(ctx, owner)
		return ok, err
	default:
		return owner == "", nil
	}
}

// OwnerTenant returns the tenant that owns a record (owner: its tenant_id), with its effective
// limits, on any route of a hosted gateway: how a device-keyed route, which has no tenant in
// its context, learns the limits of its device's tenant (devices.Store.Owner gives the id).
// False when owner is "", when the tenant does not exist, and outside hosted mode.
func OwnerTenant(ctx context.Context, owner string) (Tenant, bool, error) {
	s := scopeOf(ctx)
	if owner == "" || s == nil || s.store == nil {
		return Tenant{}, false, nil
	}
	if s.tenant != nil && s.tenant.ID == owner {
		return *s.tenant, true, nil
	}
	e, ok, err := s.store.lookup(ctx, owner)
	if err != nil || !ok {
		return Tenant{}, false, err
	}
	return e.tenant, true, nil
}

// Reservation is one unit of quota taken by Reserve; Release gives it back when the create it
// was taken for failed.
type Reservation struct {
	store  *Store
	tenant string
	res    Resource
}

// Release returns the reserved unit. It is a no-op for a reservation without a tenant.
func (r Reservation) Release(ctx context.Context) {
	if r.store != nil {
		r.store.release(ctx, r.tenant, r.res)
	}
}

// Reserve takes one unit of the request's tenant's quota of res before the channel or device
// is created: quota_exceeded (403) when the tenant owns its limit already, unavailable when the
// count cannot be read or written. Without a tenant it reserves nothing and never fails.
func Reserve(ctx context.Context, res Resource) (Reservation, error) {
	t, ok := FromContext(ctx)
	if !ok || t.store == nil {
		return Reservation{}, nil
	}
	limit := t.Limits.Channels
	if res == Devices {
		limit = t.Limits.Devices
	}
	if err := t.store.reserve(ctx, t.ID, res, limit); err != nil {
		return Reservation{}, err
	}
	return Reservation{store: t.store, tenant: t.ID, res: res}, nil
}

// CountOp counts one accepted event op for the request's tenant's daily usage. It only touches
// memory; without a tenant it does nothing.
func CountOp(ctx context.Context) {
	if t, ok := FromContext(ctx); ok && t.store != nil {
		t.store.meter.Add(t.ID, 1, 0)
	}
}

func quotaExceeded(res Resource, limit int) *apierr.Error {
	return apierr.Newf("quota_exceeded", "the tenant owns %d %s, its limit", limit, res)
}

func unavailable() *apierr.Error {
	e := apierr.New("unavailable", "the tenant store is unavailable; retry later")
	e.RetryAfter = 5
	return e
}

// nowMillis is the wall clock in Unix milliseconds (records' timestamps).
func nowMillis() int64 { return time.Now().UnixMilli() }
