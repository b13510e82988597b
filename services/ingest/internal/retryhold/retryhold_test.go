package retryhold_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"pushgo.dev/gateway/services/ingest/internal/retryhold"
)

// clock is a fake clock whose timers fire at once and record what they were asked to wait.
type clock struct {
	t      time.Time
	waited []time.Duration
}

func (c *clock) now() time.Time { return c.t }

func (c *clock) after(d time.Duration) <-chan time.Time {
	c.waited = append(c.waited, d)
	ch := make(chan time.Time, 1)
	ch <- c.t.Add(d)
	return ch
}

func TestHold(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		retryAfter time.Duration // told on the connection; 0: nothing
		elapsed    time.Duration // then the clock moves on this much before the next request
		wantHold   time.Duration // 0: not held
	}{
		{"nothing told", 0, 0, 0},
		{"back at once", time.Second, 0, time.Second},
		{"back halfway", time.Second, 400 * time.Millisecond, 600 * time.Millisecond},
		{"back after the Retry-After", time.Second, time.Second, 0},
		{"a long lockout is held at most max", time.Hour, time.Minute, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &clock{t: time.Unix(1_700_000_000, 0)}
			h := retryhold.NewForTest(time.Second, c.now, c.after)
			ctx := retryhold.ConnContext(t.Context(), nil)
			h.Told(ctx, tt.retryAfter)
			c.t = c.t.Add(tt.elapsed)
			if err := h.Wait(ctx); err != nil {
				t.Fatal(err)
			}
			var want []time.Duration
			if tt.wantHold > 0 {
				want = []time.Duration{tt.wantHold}
			}
			if len(c.waited) != len(want) || (len(want) == 1 && c.waited[0] != want[0]) {
				t.Fatalf("held %v, want %v", c.waited, want)
			}
		})
	}
}

// TestHoldIsPerConnection: another connection, or a context without one, is never held, and a
// shorter Retry-After does not cut a longer one short.
func TestHoldIsPerConnection(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	h := retryhold.NewForTest(time.Minute, c.now, c.after)
	a, b := retryhold.ConnContext(t.Context(), nil), retryhold.ConnContext(t.Context(), nil)
	h.Told(a, 10*time.Second)
	h.Told(a, time.Second)
	for _, ctx := range []context.Context{b, t.Context()} {
		if err := h.Wait(ctx); err != nil || len(c.waited) != 0 {
			t.Fatalf("another connection: err %v, held %v", err, c.waited)
		}
	}
	if err := h.Wait(a); err != nil || len(c.waited) != 1 || c.waited[0] != 10*time.Second {
		t.Fatalf("the told connection: err %v, held %v, want [10s]", err, c.waited)
	}
}

// TestHoldEndsWithRequest: a held request whose client goes away returns at once.
func TestHoldEndsWithRequest(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	never := func(time.Duration) <-chan time.Time { return nil }
	h := retryhold.NewForTest(time.Second, func() time.Time { return now }, never)
	ctx, cancel := context.WithCancel(retryhold.ConnContext(t.Context(), nil))
	h.Told(ctx, time.Second)
	cancel()
	if err := h.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
}

func TestHoldOff(t *testing.T) {
	t.Parallel()
	var zero *retryhold.Holder
	for _, h := range []*retryhold.Holder{zero, {}, retryhold.New(-1)} {
		ctx := retryhold.ConnContext(t.Context(), nil)
		h.Told(ctx, time.Hour)
		if err := h.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
