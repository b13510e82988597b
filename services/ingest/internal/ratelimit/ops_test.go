package ratelimit

import (
	"context"
	"testing"
	"time"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
)

type tenantKey struct{}

// tenantOf is a TenantFunc over the tenant withTenant put in the context.
func tenantOf(ctx context.Context) (string, float64, bool) {
	tn, ok := ctx.Value(tenantKey{}).(struct {
		id   string
		rate float64
	})
	return tn.id, tn.rate, ok
}

func withTenant(ctx context.Context, id string, rate float64) context.Context {
	return context.WithValue(ctx, tenantKey{}, struct {
		id   string
		rate float64
	}{id, rate})
}

// admitted counts the ops AllowOp lets through of n on channel ch, checking every refusal.
func admitted(t *testing.T, o *EventOps, ctx context.Context, ch string, n int) int {
	t.Helper()
	ok := 0
	for range n {
		err := o.AllowOp(ctx, ch)
		if err == nil {
			ok++
			continue
		}
		e, isAPI := apierr.As(err)
		if !isAPI || e.Code != "rate_limited" || e.HTTPStatus() != 429 || e.RetryAfter < 1 {
			t.Fatalf("refusal = %#v, want 429 rate_limited with Retry-After", err)
		}
	}
	return ok
}

func TestEventOps(t *testing.T) {
	t.Parallel()
	const a, b = "AAAAAAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBBBBBB"
	tests := []struct {
		name    string
		channel float64 // ops/s
		tenant  float64
		run     func(t *testing.T, o *EventOps, ctx context.Context)
	}{
		{"channel limit, burst 2x, other channels unaffected", 1, 0, func(t *testing.T, o *EventOps, ctx context.Context) {
			if got := admitted(t, o, ctx, a, 10); got != 2 {
				t.Fatalf("channel a: %d admitted, want 2", got)
			}
			if got := admitted(t, o, ctx, b, 10); got != 2 {
				t.Fatalf("channel b: %d admitted, want 2", got)
			}
		}},
		{"no tenant: only the channel limit", 100, 1, func(t *testing.T, o *EventOps, ctx context.Context) {
			if got := admitted(t, o, ctx, a, 300); got != 200 {
				t.Fatalf("%d admitted, want 200", got)
			}
		}},
		{"tenant limit across its channels", 100, 2, func(t *testing.T, o *EventOps, ctx context.Context) {
			t1 := withTenant(ctx, "t1", 0)
			if got := admitted(t, o, t1, a, 3) + admitted(t, o, t1, b, 3); got != 4 {
				t.Fatalf("tenant t1: %d admitted, want 4", got)
			}
			if got := admitted(t, o, withTenant(ctx, "t2", 0), a, 3); got != 3 {
				t.Fatalf("tenant t2 suffered from t1: %d admitted, want 3", got)
			}
		}},
		{"a channel over its limit spends none of its tenant's tokens", 1, 5, func(t *testing.T, o *EventOps, ctx context.Context) {
			t1 := withTenant(ctx, "t1", 0)
			if got := admitted(t, o, t1, a, 100); got != 2 {
				t.Fatalf("flooding channel: %d admitted, want 2", got)
			}
			// The tenant's burst is 10; the flood took only its 2 admitted ops.
			o.ChannelPerSecond = 100
			if got := admitted(t, o, t1, b, 20); got != 8 {
				t.Fatalf("sibling channel: %d admitted, want 8", got)
			}
		}},
		{"a tenant's own limit", 100, 1000, func(t *testing.T, o *EventOps, ctx context.Context) {
			if got := admitted(t, o, withTenant(ctx, "small", 1), a, 10); got != 2 {
				t.Fatalf("override 1/s: %d admitted, want 2", got)
			}
			o.ChannelPerSecond = 0
			if got := admitted(t, o, withTenant(ctx, "unlimited", -1), b, 5000); got != 5000 {
				t.Fatalf("no limit: %d admitted of 5000", got)
			}
		}},
		{"all off", 0, 0, func(t *testing.T, o *EventOps, ctx context.Context) {
			if got := admitted(t, o, withTenant(ctx, "t1", 0), a, 1000); got != 1000 {
				t.Fatalf("%d admitted of 1000", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, _ := newLocal(t, Options{})
			o := &EventOps{Buckets: l, ChannelPerSecond: tt.channel, TenantPerSecond: tt.tenant, Tenant: tenantOf}
			tt.run(t, o, t.Context())
		})
	}
}

// TestEventOpsRetryAfter: Retry-After is the wait in whole seconds, rounded up.
func TestEventOpsRetryAfter(t *testing.T) {
	t.Parallel()
	l, c := newLocal(t, Options{})
	o := &EventOps{Buckets: l, ChannelPerSecond: 0.25} // burst 0.5 → 1 token, refilled in 4 s
	ctx := t.Context()
	if err := o.AllowOp(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	c.Advance(500 * time.Millisecond)
	e, _ := apierr.As(o.AllowOp(ctx, "c"))
	if e == nil || e.RetryAfter != 4 {
		t.Fatalf("refusal %v, want Retry-After 4 (3.5 s rounded up)", e)
	}
}
