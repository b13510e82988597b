// Package createlimit limits what a client can create without any credential (DESIGN.md §8.2
// "unauthenticated creates"): channels (/channel/create, /channel/subscribe by channel_name)
// and devices (/device/register when it issues a new key) share one budget per client address,
// --creates-per-minute with a burst of as many, answered 429 rate_limited with Retry-After
// beyond it. A /device/register that confirms an existing key creates nothing and is not
// counted (apps call it at every start). The budget lives in the shared Limiter, so it holds
// across ingest replicas.
package createlimit

import (
	"context"
	"math"
	"time"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
)

// Limiter is the token-bucket store the budgets live in (the limiter shared over NATS): all
// a create budget needs of it.
type Limiter interface {
	// Allow takes one token from key's bucket (refilled at rate tokens per second, capacity
	// burst) if one is there; otherwise it reports how long until one will be.
	Allow(key string, rate, burst float64) (ok bool, retryAfter time.Duration)
}

// Creates is the per-address create budget. A nil *Creates (the limit off) allows everything.
// It is safe for concurrent use.
type Creates struct {
	lim         Limiter
	rate, burst float64
}

// New returns a budget of perMinute creates per client address per minute (burst perMinute)
// kept in lim. perMinute ≤ 0 turns the limit off: it returns nil.
func New(lim Limiter, perMinute int) *Creates {
	if perMinute <= 0 || lim == nil {
		return nil
	}
	return &Creates{lim: lim, rate: float64(perMinute) / 60, burst: float64(perMinute)}
}

// Check takes one create from the budget of the client address in ctx (key "create:<addr>"):
// nil, or 429 rate_limited with Retry-After. Exempt addresses are not counted; a context
// without an address counts against the shared "unknown" key. Call it once per create, after
// the request's fields were validated.
func (c *Creates) Check(ctx context.Context) error {
	if c == nil {
		return nil
	}
	a, _ := clientaddr.FromContext(ctx)
	if a.Exempt {
		return nil
	}
	ok, wait := c.lim.Allow("create:"+a.Key(), c.rate, c.burst)
	if ok {
		return nil
	}
	e := apierr.New("rate_limited", "too many channels or devices created from your address; retry later")
	e.RetryAfter = max(1, int(math.Ceil((wait - time.Millisecond).Seconds())))
	return e
}
