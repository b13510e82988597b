// Package attempts throttles password guessing (DESIGN.md §8.2 "wrong passwords"): per channel
// and client address, a budget of password checks per minute, then lockouts that double while
// the guessing goes on. While an address is locked out of a channel its passwords are not even
// hashed: the answer is 429 too_many_attempts with Retry-After.
//
// How the pieces fit in channels.Store.Authorize, in this order:
//
//  1. an unknown channel is answered 404 before anything here runs: it is never counted (the
//     404 is the documented answer for an unknown channel, so counting would hide nothing, and
//     channel ids are 128 random bits, so they cannot be enumerated);
//  2. a password already proven right (the verified-credential cache) is accepted without
//     Check: no counter locks out a channel's known credential;
//  3. Check takes one token from the budget of (channel, address) — every verification about
//     to be hashed costs one, right or wrong, so concurrent guesses cannot overshoot the
//     budget; concurrent requests with the same password share one verification and one
//     token — and refuses when none is left;
//  4. after the hash, Failed or Succeeded: a failure that empties the budget starts a lockout;
//     a success ends the streak of lockouts.
//
// The budget is a token bucket of FailuresPerMinute tokens refilled over a minute, in the shared
// Limiter, so it holds across ingest replicas; a lockout is a debt charged to that bucket, so
// it holds on every replica too. Only the lockout level (how many lockouts in a row) is kept
// per process: an attacker spreading its guesses over replicas doubles per replica, still
// exponentially.
package attempts

import (
	"context"
	"math"
	"sync"
	"time"

	"pushgo.dev/gateway/services/ingest/internal/apierr"
	"pushgo.dev/gateway/services/ingest/internal/clientaddr"
)

// Limiter is the token-bucket store the budgets live in: the limiter shared over NATS.
type Limiter interface {
	// Allow takes one token from key's bucket (refilled at rate tokens per second, capacity burst) if
	// one is there; otherwise it reports how long until one will be.
	Allow(key string, rate, burst float64) (ok bool, retryAfter time.Duration)
	// Peek reports the same without taking a token.
	Peek(key string, rate, burst float64) (ok bool, retryAfter time.Duration)
	// Charge takes n tokens whatever is left; the bucket may go negative, which lengthens the wait.
	Charge(key string, rate, burst, n float64)
}

const (
	// FirstLockout is the wait after the budget is first used up: the minute the budget is
	// counted over.
	FirstLockout = time.Minute
	// MaxLockout caps the doubling: a locked-out address gets at least one try an hour.
	MaxLockout = time.Hour
	// streakGap is how long after a lockout ended the next one still counts as "in a row".
	streakGap = MaxLockout
	// maxStreaks bounds the per-process lockout levels kept (one small entry per locked-out
	// channel × address); beyond it an arbitrary entry is forgotten, which only restarts that
	// key's doubling (its debt stays in the Limiter).
	maxStreaks = 100_000
)

// Lockout is the wait of the level-th lockout in a row (level ≥ 1): FirstLockout doubled
// level-1 times, at most MaxLockout.
func Lockout(level int) time.Duration {
	if level <= 1 {
		return FirstLockout
	}
	if level > 16 {
		return MaxLockout
	}
	return min(FirstLockout<<(level-1), MaxLockout)
}

// Guard counts password checks per channel × client address. A nil *Guard (the limit off)
// allows everything. It is safe for concurrent use.
type Guard struct {
	lim         Limiter
	rate, burst float64
	now         func() time.Time

	mu      sync.Mutex
	streaks map[string]*streak
}

// streak is the lockout level of one key in this process.
type streak struct {
	level int
	until time.Time // when the current (or last) lockout ends
}

// New returns a guard allowing perMinute password checks per channel × address per minute
// (burst perMinute), keeping its buckets in lim; now is the clock (time.Now when nil).
// perMinute ≤ 0 turns the limit off: it returns nil.
func New(lim Limiter, perMinute int, now func() time.Time) *Guard {
	if perMinute <= 0 || lim == nil {
		return nil
	}
	if now == nil {
		now = time.Now
	}
	return &Guard{lim: lim, rate: float64(perMinute) / 60, burst: float64(perMinute), now: now, streaks: map[string]*streak{}}
}

// key is the bucket of a channel and the client address in ctx; "" when the address is exempt.
func key(ctx context.Context, channelID string) string {
	a, _ := clientaddr.FromContext(ctx) // no address: the shared "unknown" key
	if a.Exempt {
		return ""
	}
	return "pw:" + channelID + ":" + a.Key()
}

// Check takes one password check from the budget of channelID and the client address in ctx:
// nil, or 429 too_many_attempts with Retry-After when the address is locked out. Call it only
// for a password that is about to be hashed.
func (g *Guard) Check(ctx context.Context, channelID string) error {
	k := key(ctx, channelID)
	if g == nil || k == "" {
		return nil
	}
	ok, wait := g.lim.Allow(k, g.rate, g.burst)
	if ok {
		return nil
	}
	e := apierr.New("too_many_attempts", "too many wrong passwords for this channel from your address; retry later")
	e.RetryAfter = seconds(wait)
	return e
}

// Failed records that the password Check let through was wrong. If that used up the budget, a
// lockout starts: the level-th in a row lasts Lockout(level).
func (g *Guard) Failed(ctx context.Context, channelID string) {
	k := key(ctx, channelID)
	if g == nil || k == "" {
		return
	}
	ok, wait := g.lim.Peek(k, g.rate, g.burst)
	if ok {
		return // budget left: no lockout yet
	}
	now := g.now()
	g.mu.Lock()
	s := g.streaks[k]
	if s != nil && now.Before(s.until) {
		g.mu.Unlock()
		return // a lockout already runs (failures that were in flight when it began)
	}
	if s == nil {
		if len(g.streaks) >= maxStreaks {
			for old := range g.streaks {
				delete(g.streaks, old)
				break
			}
		}
		s = &streak{}
		g.streaks[k] = s
	}
	if s.level > 0 && now.Sub(s.until) > streakGap {
		s.level = 0 // the last lockout is long past: start over
	}
	s.level++
	lock := Lockout(s.level)
	s.until = now.Add(lock)
	g.mu.Unlock()
	if extra := lock - wait; extra > 0 {
		// A hair less than the exact debt: float rounding must not make the lockout end a
		// nanosecond late, which Retry-After (whole seconds, rounded up) would show as a second.
		g.lim.Charge(k, g.rate, g.burst, extra.Seconds()*g.rate-1e-9)
	}
}

// Succeeded records that the password Check let through was right: the streak of lockouts of
// this channel and address ends.
func (g *Guard) Succeeded(ctx context.Context, channelID string) {
	k := key(ctx, channelID)
	if g == nil || k == "" {
		return
	}
	g.mu.Lock()
	delete(g.streaks, k)
	g.mu.Unlock()
}

// seconds is a Retry-After value: whole seconds, rounded up (ignoring the last millisecond,
// float noise of the bucket maths), at least 1.
func seconds(d time.Duration) int {
	return max(1, int(math.Ceil((d - time.Millisecond).Seconds())))
}
