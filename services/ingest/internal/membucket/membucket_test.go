package membucket

import (
	"fmt"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestBuckets(t *testing.T) {
	t.Parallel()
	type step struct {
		advance   time.Duration
		op        string // allow, peek, charge
		n         float64
		wantOK    bool
		wantAfter time.Duration
	}
	tests := []struct {
		name        string
		rate, burst float64
		steps       []step
	}{
		{"burst then refill", 1, 2, []step{
			{0, "allow", 0, true, 0},
			{0, "allow", 0, true, 0},
			{0, "allow", 0, false, time.Second},
			{400 * time.Millisecond, "peek", 0, false, 600 * time.Millisecond},
			{600 * time.Millisecond, "allow", 0, true, 0},
			{0, "allow", 0, false, time.Second},
		}},
		{"refill is capped at burst", 10, 3, []step{
			{0, "allow", 0, true, 0},
			{time.Hour, "allow", 0, true, 0},
			{0, "allow", 0, true, 0},
			{0, "allow", 0, true, 0},
			{0, "allow", 0, false, 100 * time.Millisecond},
		}},
		{"peek takes nothing", 1, 1, []step{
			{0, "peek", 0, true, 0},
			{0, "peek", 0, true, 0},
			{0, "allow", 0, true, 0},
			{0, "peek", 0, false, time.Second},
		}},
		{"charge goes negative and lengthens the wait", 0.5, 1, []step{
			{0, "charge", 5, false, 0},
			{0, "peek", 0, false, 10 * time.Second}, // 1-(1-5) = 5 tokens at 0.5/s
			{9 * time.Second, "allow", 0, false, time.Second},
			{time.Second, "allow", 0, true, 0},
		}},
		{"denied allow takes nothing", 1, 1, []step{
			{0, "allow", 0, true, 0},
			{0, "allow", 0, false, time.Second},
			{0, "allow", 0, false, time.Second},
		}},
		{"zero rate is no limit", 0, 5, []step{
			{0, "charge", 100, false, 0},
			{0, "allow", 0, true, 0},
		}},
		{"fractional rate (10 per minute)", 10.0 / 60, 10, []step{
			{0, "charge", 10, false, 0},
			{0, "allow", 0, false, 6 * time.Second},
			{6 * time.Second, "allow", 0, true, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &clock{t: time.Unix(1000, 0)}
			b := New(Options{Now: c.now})
			for i, s := range tt.steps {
				c.t = c.t.Add(s.advance)
				var ok bool
				var after time.Duration
				switch s.op {
				case "allow":
					ok, after = b.Allow("k", tt.rate, tt.burst)
				case "peek":
					ok, after = b.Peek("k", tt.rate, tt.burst)
				case "charge":
					b.Charge("k", tt.rate, tt.burst, s.n)
					continue
				}
				if ok != s.wantOK || after != s.wantAfter {
					t.Fatalf("step %d (%s): got %v %s, want %v %s", i, s.op, ok, after, s.wantOK, s.wantAfter)
				}
			}
		})
	}
}

func TestKeysAreBoundedAndIdleOnesDropped(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Unix(1000, 0)}
	b := New(Options{Now: c.now, MaxKeys: 10})
	for i := range 100 {
		b.Allow(fmt.Sprint("k", i), 1, 1)
	}
	if n := b.Len(); n != 10 {
		t.Fatalf("%d buckets, want the cap 10", n)
	}
	// The most recent key survived the churn; its bucket is still empty.
	if ok, _ := b.Peek("k99", 1, 1); ok {
		t.Fatal("the most recent bucket was dropped")
	}
	// Once refilled, buckets are dropped as other keys are used.
	c.t = c.t.Add(time.Minute)
	for range 10 {
		b.Peek("other", 1, 1)
	}
	if n := b.Len(); n != 0 {
		t.Fatalf("%d idle full buckets kept", n)
	}
	// Peeking a key never seen makes no bucket.
	b.Peek("never", 1, 1)
	if n := b.Len(); n != 0 {
		t.Fatalf("peek made %d buckets", n)
	}
}
