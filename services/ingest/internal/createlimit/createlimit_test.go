package createlimit

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
	"pushgo.dev/gateway/services/ingest/internal/ratelimit"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	// A fake clock; the limiter's background sweep reads it too, hence atomic.
	var now atomic.Int64
	now.Store(time.Unix(1_700_000_000, 0).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	c := New(ratelimit.NewLocal(ratelimit.Options{Now: clock}), 3)
	at := func(ip string, exempt bool) context.Context {
		return clientaddr.NewContext(t.Context(), clientaddr.Addr{IP: netip.MustParseAddr(ip), Exempt: exempt})
	}
	retry := func(ctx context.Context) int {
		err := c.Check(ctx)
		if err == nil {
			return 0
		}
		e, ok := apierr.As(err)
		if !ok || e.Code != "rate_limited" {
			t.Fatalf("refusal %v", err)
		}
		return e.RetryAfter
	}
	tests := []struct {
		name    string
		advance time.Duration
		ctx     context.Context
		want    int // Retry-After; 0: allowed
	}{
		{"1st", 0, at("203.0.113.1", false), 0},
		{"2nd", 0, at("203.0.113.1", false), 0},
		{"3rd", 0, at("203.0.113.1", false), 0},
		{"4th: a create comes back every 20 s", 0, at("203.0.113.1", false), 20},
		{"another address", 0, at("203.0.113.2", false), 0},
		{"exempt", 0, at("203.0.113.1", true), 0},
		{"after 20 s", 20 * time.Second, at("203.0.113.1", false), 0},
		{"and then none", 0, at("203.0.113.1", false), 20},
		{"no address: one shared key", 0, t.Context(), 0},
	}
	for _, tt := range tests { // in order: the steps share the buckets
		now.Add(int64(tt.advance))
		if got := retry(tt.ctx); got != tt.want {
			t.Fatalf("%s: Retry-After %d, want %d", tt.name, got, tt.want)
		}
	}
	var off *Creates
	if New(ratelimit.NewLocal(ratelimit.Options{}), 0) != nil || off.Check(t.Context()) != nil {
		t.Fatal("0 per minute is not off")
	}
}
