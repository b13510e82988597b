package ratelimit

import (
	"context"
	"math"
	"time"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

// BurstFactor is a bucket's capacity in seconds of its rate: the "burst 2×" of DESIGN.md §8.2.
const BurstFactor = 2

// Key prefixes of the event-op buckets; other users of a Limiter pick their own.
const (
	keyChannelOps = "ops.ch."
	keyTenantOps  = "ops.tn."
)

// Buckets is what EventOps needs of a limiter (*Limiter has it).
type Buckets interface {
	Allow(key string, rate, burst float64) (ok bool, retryAfter time.Duration)
	Peek(key string, rate, burst float64) (ok bool, retryAfter time.Duration)
}

// TenantFunc tells which tenant a request acts for, from its context: ok false when there is
// none (public and private mode), and then only the channel limit applies. opsPerSecond is the
// tenant's own limit: 0 means the default (EventOps.TenantPerSecond), a negative value no limit.
type TenantFunc func(ctx context.Context) (id string, opsPerSecond float64, ok bool)

// EventOps enforces the event-op rate limits of DESIGN.md §8.2: per channel and per tenant,
// token buckets with a burst of BurstFactor seconds, shared across ingest instances through
// the Limiter. It is safe for concurrent use; set its fields before serving.
//
// What counts: every create, update and close that passed authorisation, repeats of an op_id
// included (telling a repeat needs the op record, a broker read this check avoids; a client
// retrying after a 429 waits as Retry-After says anyway). Reads (get, history, list) are not
// event ops and are not counted. A refused op takes no token, so a client flooding at ten times
// its limit still gets its limit's worth through, and leaves no op record: a retry with the
// same op_id later runs normally.
type EventOps struct {
	Buckets Buckets
	// ChannelPerSecond is every channel's limit in ops per second; 0 is none.
	ChannelPerSecond float64
	// TenantPerSecond is a tenant's limit in ops per second unless Tenant gives its own; 0 is
	// none.
	TenantPerSecond float64
	// Tenant, when set, names the request's tenant (hosted mode).
	Tenant TenantFunc
}

// AllowOp takes a token for one event op on channelID and returns nil, or a 429 rate_limited
// error with Retry-After (whole seconds, at least 1) when the channel or its tenant is over its
// limit. The tenant's bucket is looked at first but taken from last, so a channel over its own
// limit never spends its tenant's tokens (one flooding channel cannot starve its siblings).
func (o *EventOps) AllowOp(ctx context.Context, channelID string) error {
	var tenantKey string
	var tenantRate float64
	if o.Tenant != nil {
		if id, rate, ok := o.Tenant(ctx); ok {
			tenantKey, tenantRate = keyTenantOps+id, rate
			if rate == 0 {
				tenantRate = o.TenantPerSecond
			}
		}
	}
	tenantLimited := tenantKey != "" && tenantRate > 0
	if tenantLimited {
		if ok, wait := o.Buckets.Peek(tenantKey, tenantRate, BurstFactor*tenantRate); !ok {
			return refusal("the tenant", tenantRate, wait)
		}
	}
	if rate := o.ChannelPerSecond; rate > 0 {
		if ok, wait := o.Buckets.Allow(keyChannelOps+channelID, rate, BurstFactor*rate); !ok {
			return refusal("channel "+channelID, rate, wait)
		}
	}
	if tenantLimited {
		if ok, wait := o.Buckets.Allow(tenantKey, tenantRate, BurstFactor*tenantRate); !ok {
			return refusal("the tenant", tenantRate, wait)
		}
	}
	return nil
}

func refusal(who string, rate float64, wait time.Duration) *apierr.Error {
	e := apierr.Newf("rate_limited", "%s is over its limit of %g event ops per second; retry later", who, rate)
	e.RetryAfter = RetryAfterSeconds(wait)
	return e
}

// RetryAfterSeconds is wait as a Retry-After value: whole seconds, rounded up, at least 1.
func RetryAfterSeconds(wait time.Duration) int {
	return max(1, int(math.Ceil(wait.Seconds())))
}
