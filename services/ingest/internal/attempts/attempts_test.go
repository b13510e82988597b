package attempts

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
	"pushgo.dev/gateway/services/ingest/internal/ratelimit"
)

func TestLockoutSchedule(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level int
		want  time.Duration
	}{
		{0, time.Minute},
		{1, time.Minute},
		{2, 2 * time.Minute},
		{3, 4 * time.Minute},
		{6, 32 * time.Minute},
		{7, time.Hour}, // 64 min, capped
		{8, time.Hour},
		{40, time.Hour}, // no shift overflow
	}
	for _, tt := range tests {
		if got := Lockout(tt.level); got != tt.want {
			t.Errorf("Lockout(%d) = %s, want %s", tt.level, got, tt.want)
		}
	}
}

// clock is a fake clock; the limiter's background sweep reads it too, hence the lock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func from(t *testing.T, ip string, exempt bool) context.Context {
	return clientaddr.NewContext(t.Context(), clientaddr.Addr{IP: netip.MustParseAddr(ip), Exempt: exempt})
}

// try is one password check as channels.Store.Authorize makes it: Check, then the outcome.
// It returns the Retry-After of a refusal, 0 when the check ran.
func try(t *testing.T, g *Guard, ctx context.Context, ch string, right bool) int {
	t.Helper()
	if err := g.Check(ctx, ch); err != nil {
		e, ok := apierr.As(err)
		if !ok || e.Code != "too_many_attempts" || e.RetryAfter < 1 {
			t.Fatalf("refusal %v", err)
		}
		return e.RetryAfter
	}
	if right {
		g.Succeeded(ctx, ch)
	} else {
		g.Failed(ctx, ch)
	}
	return 0
}

func TestBackOff(t *testing.T) {
	t.Parallel()
	type step struct {
		advance time.Duration
		addr    string
		right   bool
		times   int // the step repeated (1 when 0)
		// wantRetry is the Retry-After of the last repetition; 0: the check ran.
		wantRetry int
	}
	const a, b = "198.51.100.1", "198.51.100.2"
	tests := []struct {
		name  string
		steps []step
	}{
		{"ten per minute, then a minute's lockout", []step{
			{0, a, false, 10, 0},
			{0, a, false, 1, 60},
			{59 * time.Second, a, false, 1, 1},
			{time.Second, a, false, 1, 0}, // one try after the lockout ...
			{0, a, false, 1, 120},         // ... it was wrong: twice as long
		}},
		{"each lockout in a row doubles, up to an hour", []step{
			{0, a, false, 10, 0},
			{0, a, false, 1, 60},
			{time.Minute, a, false, 1, 0},
			{2 * time.Minute, a, false, 1, 0},
			{4 * time.Minute, a, false, 1, 0},
			{8 * time.Minute, a, false, 1, 0},
			{16 * time.Minute, a, false, 1, 0},
			{32 * time.Minute, a, false, 1, 0},
			{0, a, false, 1, 3600},
			{time.Hour, a, false, 1, 0},
			{0, a, false, 1, 3600},
		}},
		{"a right password ends the streak", []step{
			{0, a, false, 10, 0},
			{time.Minute, a, false, 1, 0},
			{2 * time.Minute, a, true, 1, 0},
			{time.Minute, a, false, 10, 0}, // the budget refilled over that minute
			{0, a, false, 1, 60},           // the next lockout is a first one again
		}},
		{"a lockout long past starts over", []step{
			{0, a, false, 10, 0},
			{time.Minute, a, false, 1, 0},
			{2*time.Minute + 2*time.Hour, a, false, 10, 0},
			{0, a, false, 1, 60},
		}},
		{"guessing slower than the budget is never locked out", []step{
			{0, a, false, 5, 0},
			{30 * time.Second, a, false, 5, 0},
			{30 * time.Second, a, false, 5, 0},
			{30 * time.Second, a, false, 5, 0},
		}},
		{"another address is not affected", []step{
			{0, a, false, 10, 0},
			{0, a, false, 1, 60},
			{0, b, false, 10, 0},
			{0, b, true, 1, 60},
		}},
		{"every hashed password costs a token, a right one too", []step{
			{0, a, true, 10, 0},
			{0, a, true, 1, 6},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &clock{t: time.Unix(1_700_000_000, 0)}
			g := New(ratelimit.NewLocal(ratelimit.Options{Now: c.now}), 10, c.now)
			for i, s := range tt.steps {
				c.add(s.advance)
				got := 0
				for range max(1, s.times) {
					got = try(t, g, from(t, s.addr, false), "CH", s.right)
				}
				if got != s.wantRetry {
					t.Fatalf("step %d: Retry-After %d, want %d", i, got, s.wantRetry)
				}
			}
		})
	}
}

func TestChannelsAreSeparateAndExemptAndOff(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	g := New(ratelimit.NewLocal(ratelimit.Options{Now: c.now}), 2, c.now)
	ctx := from(t, "2001:db8:1:2::1", false)
	for range 2 {
		try(t, g, ctx, "A", false)
	}
	if got := try(t, g, ctx, "A", false); got != 60 {
		t.Fatalf("locked out of A: Retry-After %d", got)
	}
	if got := try(t, g, ctx, "B", false); got != 0 {
		t.Fatalf("channel B refused (%d) after guesses on A", got)
	}
	// The same /64 is the same client.
	if got := try(t, g, from(t, "2001:db8:1:2::99", false), "A", false); got != 60 {
		t.Fatalf("another address of the /64: Retry-After %d", got)
	}
	exempt := from(t, "192.0.2.1", true)
	for range 20 {
		if got := try(t, g, exempt, "A", false); got != 0 {
			t.Fatalf("exempt address refused: %d", got)
		}
	}
	var off *Guard
	if New(ratelimit.NewLocal(ratelimit.Options{}), 0, nil) != nil {
		t.Fatal("0 per minute is not off")
	}
	for range 20 {
		if got := try(t, off, ctx, "A", false); got != 0 {
			t.Fatalf("the limit off refused: %d", got)
		}
	}
}
