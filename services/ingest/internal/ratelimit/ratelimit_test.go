package ratelimit

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// clock is a fake clock for the bucket maths.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newLocal returns a local-only limiter on a fake clock.
func newLocal(t *testing.T, opts Options) (*Limiter, *clock) {
	t.Helper()
	c := newClock()
	opts.Now = c.Now
	l, err := New(nil, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	return l, c
}

// step is one action on key "k" and what it must report.
type step struct {
	advance time.Duration // the clock moves first
	do      string        // "allow", "peek", "charge" or "remote" (another instance took n)
	n       float64       // tokens for charge and remote
	times   int           // repeat count (default 1); every repeat must report the same
	wantOK  bool
	// wantWait is the reported retry-after (allow and peek), to the nanosecond.
	wantWait time.Duration
}

func TestBucketMaths(t *testing.T) {
	t.Parallel()
	const rate, burst = 2.0, 4.0 // 2 tokens/s, 4 at most
	tests := []struct {
		name  string
		rate  float64
		burst float64
		steps []step
	}{
		{"a new key starts with its burst", rate, burst, []step{
			{do: "allow", times: 4, wantOK: true},
			{do: "allow", wantOK: false, wantWait: 500 * time.Millisecond},
		}},
		{"refill at rate", rate, burst, []step{
			{do: "allow", times: 4, wantOK: true},
			{advance: 250 * time.Millisecond, do: "allow", wantOK: false, wantWait: 250 * time.Millisecond},
			{advance: 250 * time.Millisecond, do: "allow", wantOK: true},
			{do: "allow", wantOK: false, wantWait: 500 * time.Millisecond},
			{advance: time.Second, do: "allow", times: 2, wantOK: true},
			{do: "allow", wantOK: false, wantWait: 500 * time.Millisecond},
		}},
		{"refill stops at the burst", rate, burst, []step{
			{do: "allow", times: 4, wantOK: true},
			{advance: time.Hour, do: "allow", times: 4, wantOK: true},
			{do: "allow", wantOK: false, wantWait: 500 * time.Millisecond},
		}},
		{"a refusal takes nothing", rate, burst, []step{
			{do: "allow", times: 4, wantOK: true},
			{do: "allow", times: 100, wantOK: false, wantWait: 500 * time.Millisecond},
			{advance: 500 * time.Millisecond, do: "allow", wantOK: true},
		}},
		{"peek takes nothing", rate, burst, []step{
			{do: "peek", times: 10, wantOK: true},
			{do: "allow", times: 4, wantOK: true},
			{do: "peek", times: 3, wantOK: false, wantWait: 500 * time.Millisecond},
			{advance: 500 * time.Millisecond, do: "peek", times: 3, wantOK: true},
			{do: "allow", wantOK: true},
		}},
		{"charge goes negative and lengthens the wait", rate, burst, []step{
			{do: "charge", n: 10},
			// 4 - 10 = -6: 7 tokens to go at 2/s.
			{do: "allow", wantOK: false, wantWait: 3500 * time.Millisecond},
			{advance: 3 * time.Second, do: "peek", wantOK: false, wantWait: 500 * time.Millisecond},
			{advance: 500 * time.Millisecond, do: "allow", wantOK: true},
		}},
		{"debt stops at 64 bursts", rate, burst, []step{
			{do: "charge", n: 1e9},
			// -256: 257 tokens to go at 2/s.
			{do: "allow", wantOK: false, wantWait: 128500 * time.Millisecond},
		}},
		{"what another instance took is subtracted", rate, burst, []step{
			{do: "remote", n: 3},
			{do: "allow", wantOK: true},
			{do: "allow", wantOK: false, wantWait: 500 * time.Millisecond},
		}},
		{"remote takes on a used bucket go into debt", rate, burst, []step{
			{do: "allow", times: 2, wantOK: true},
			{do: "remote", n: 5},
			// 4 - 2 - 5 = -3: 4 tokens to go.
			{do: "allow", wantOK: false, wantWait: 2 * time.Second},
			{advance: 2 * time.Second, do: "allow", wantOK: true},
		}},
		{"remote takes are refilled like local ones", rate, burst, []step{
			{do: "remote", n: 4},
			{do: "peek", wantOK: false, wantWait: 500 * time.Millisecond},
			{advance: 2 * time.Second, do: "allow", times: 4, wantOK: true},
		}},
		{"rate 0 is no limit", 0, burst, []step{
			{do: "charge", n: 1e6},
			{do: "allow", times: 1000, wantOK: true},
		}},
		{"a burst below 1 holds one token", 1, 0.2, []step{
			{do: "allow", wantOK: true},
			{do: "allow", wantOK: false, wantWait: time.Second},
			{advance: time.Second, do: "allow", wantOK: true},
		}},
		{"fractional rates", 0.5, 1, []step{
			{do: "allow", wantOK: true},
			{advance: time.Second, do: "allow", wantOK: false, wantWait: time.Second},
			{advance: time.Second, do: "allow", wantOK: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, c := newLocal(t, Options{})
			for i, s := range tt.steps {
				c.Advance(s.advance)
				for r := range max(s.times, 1) {
					var ok bool
					var wait time.Duration
					switch s.do {
					case "allow":
						ok, wait = l.Allow("k", tt.rate, tt.burst)
					case "peek":
						ok, wait = l.Peek("k", tt.rate, tt.burst)
					case "charge":
						l.Charge("k", tt.rate, tt.burst, s.n)
						continue
					case "remote":
						l.apply([]record{{key: "k", rate: tt.rate, burst: tt.burst, taken: s.n}})
						continue
					default:
						t.Fatalf("step %d: unknown action %q", i, s.do)
					}
					if ok != s.wantOK || wait != s.wantWait {
						t.Fatalf("step %d (%s #%d): got ok=%v wait=%s, want ok=%v wait=%s", i, s.do, r+1, ok, wait, s.wantOK, s.wantWait)
					}
				}
			}
		})
	}
}

// TestKeysAreIndependent: one key's use leaves another's bucket alone, also for keys longer
// than MaxKeyLen (which are hashed).
func TestKeysAreIndependent(t *testing.T) {
	t.Parallel()
	l, _ := newLocal(t, Options{})
	long1, long2 := strings.Repeat("a", 300)+"1", strings.Repeat("a", 300)+"2"
	for _, k := range []string{"a", long1} {
		if ok, _ := l.Allow(k, 1, 1); !ok {
			t.Fatalf("first use of %.10s refused", k)
		}
		if ok, _ := l.Allow(k, 1, 1); ok {
			t.Fatalf("second use of %.10s allowed", k)
		}
	}
	for _, k := range []string{"b", long2} {
		if ok, _ := l.Allow(k, 1, 1); !ok {
			t.Fatalf("%.10s suffered from another key", k)
		}
	}
}

// TestChangedLimitCapsTheTokens: a lower burst (a tenant's limit lowered) takes effect at once.
func TestChangedLimitCapsTheTokens(t *testing.T) {
	t.Parallel()
	l, _ := newLocal(t, Options{})
	if ok, _ := l.Allow("k", 10, 20); !ok {
		t.Fatal("refused")
	}
	for i := range 2 {
		if ok, _ := l.Allow("k", 1, 2); !ok {
			t.Fatalf("use %d under the new limit refused", i+1)
		}
	}
	if ok, wait := l.Allow("k", 1, 2); ok || wait != time.Second {
		t.Fatalf("beyond the new burst: ok=%v wait=%s", ok, wait)
	}
}

// TestMemoryIsBounded: buckets are capped at MaxKeys, and full ones are swept.
func TestMemoryIsBounded(t *testing.T) {
	t.Parallel()
	l, c := newLocal(t, Options{MaxKeys: 64})
	for i := range 10_000 {
		l.Allow("key-"+strconv.Itoa(i), 1, 2)
	}
	if n := l.buckets(); n > 64 {
		t.Fatalf("%d buckets held, cap 64", n)
	}
	c.Advance(2 * time.Second) // every bucket refilled
	l.sweep()
	if n := l.buckets(); n != 0 {
		t.Fatalf("%d buckets left after they all refilled", n)
	}
	// A bucket still short of its burst is kept.
	l.Allow("busy", 1, 2)
	c.Advance(500 * time.Millisecond)
	l.sweep()
	if n := l.buckets(); n != 1 {
		t.Fatalf("%d buckets after sweeping one in use, want 1", n)
	}
}

// TestPendingCollectsWhatWasTaken: what Allow and Charge took is announced once; remote takes
// are not announced again.
func TestPendingCollectsWhatWasTaken(t *testing.T) {
	t.Parallel()
	l, _ := newLocal(t, Options{})
	l.sharing.Store(true) // as with a connection
	l.Allow("a", 10, 20)
	l.Allow("a", 10, 20)
	l.Charge("b", 1, 2, 5)
	l.Allow("c", 0, 0) // no limit: nothing to announce
	l.apply([]record{{key: "d", rate: 1, burst: 2, taken: 1}})
	got := map[string]record{}
	for _, r := range l.pending() {
		got[r.key] = r
	}
	want := map[string]record{"a": {"a", 10, 20, 2}, "b": {"b", 1, 2, 5}}
	if len(got) != len(want) || got["a"] != want["a"] || got["b"] != want["b"] {
		t.Fatalf("pending = %v, want %v", got, want)
	}
	if again := l.pending(); len(again) != 0 {
		t.Fatalf("announced twice: %v", again)
	}
}

func (l *Limiter) buckets() int {
	n := 0
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		n += len(sh.buckets)
		sh.mu.Unlock()
	}
	return n
}

func TestRetryAfterSeconds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		wait time.Duration
		want int
	}{
		{0, 1},
		{time.Nanosecond, 1},
		{time.Second, 1},
		{time.Second + time.Nanosecond, 2},
		{2500 * time.Millisecond, 3},
		{maxWait, 86400},
	}
	for _, tt := range tests {
		if got := RetryAfterSeconds(tt.wait); got != tt.want {
			t.Errorf("RetryAfterSeconds(%s) = %d, want %d", tt.wait, got, tt.want)
		}
	}
}
