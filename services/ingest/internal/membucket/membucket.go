// Package membucket is an in-process set of token buckets keyed by string: the stand-in for
// the limiter shared over NATS until that one is wired (ingest.Deps.Limiter). Its method set is
// the one the limit packages (attempts, createlimit) consume. It counts only what this process
// sees: with several ingest replicas each would admit its own budget.
//
// Memory is bounded: at most MaxKeys buckets; a bucket that has refilled to its burst is the
// same as no bucket and is dropped when it comes to the end of the least-recently-used list,
// and at the cap the least recently used bucket is dropped (forgiving its debt).
package membucket

import (
	"container/list"
	"math"
	"sync"
	"time"
)

// DefaultMaxKeys bounds the buckets of one process (about 150 bytes each: ~15 MB).
const DefaultMaxKeys = 100_000

// Options configures Buckets.
type Options struct {
	// MaxKeys bounds the number of buckets (DefaultMaxKeys when 0).
	MaxKeys int
	// Now is the clock (time.Now when nil); tests inject one.
	Now func() time.Time
}

// Buckets is a set of token buckets. It is safe for concurrent use.
type Buckets struct {
	now func() time.Time
	max int

	mu  sync.Mutex
	m   map[string]*list.Element // of *bucket
	lru *list.List               // front: most recently used
}

type bucket struct {
	key         string
	tokens      float64
	at          time.Time // when tokens was computed
	rate, burst float64   // of the last call, to tell when it is full again
}

// New returns an empty set of buckets.
func New(o Options) *Buckets {
	b := &Buckets{now: o.Now, max: o.MaxKeys, m: map[string]*list.Element{}, lru: list.New()}
	if b.now == nil {
		b.now = time.Now
	}
	if b.max <= 0 {
		b.max = DefaultMaxKeys
	}
	return b
}

// Allow takes one token from key's bucket (refilled at rate tokens per second, capacity burst)
// if one is there; otherwise it reports how long until one will be. A rate or burst ≤ 0 is no
// limit: always allowed.
func (b *Buckets) Allow(key string, rate, burst float64) (ok bool, retryAfter time.Duration) {
	return b.take(key, rate, burst, 1, false)
}

// Peek reports what Allow would, without taking a token.
func (b *Buckets) Peek(key string, rate, burst float64) (ok bool, retryAfter time.Duration) {
	return b.take(key, rate, burst, 0, false)
}

// Charge takes n tokens whatever is left; the bucket may go negative, which lengthens the wait.
// n ≤ 0 does nothing.
func (b *Buckets) Charge(key string, rate, burst, n float64) {
	if n > 0 {
		b.take(key, rate, burst, n, true)
	}
}

// take refills key's bucket, then takes n tokens when one is there (or always, when force),
// and reports whether a token was there before the take and, if not, the wait for one.
func (b *Buckets) take(key string, rate, burst, n float64, force bool) (bool, time.Duration) {
	if rate <= 0 || burst <= 0 {
		return true, 0
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropIdle(now)
	var bk *bucket
	if el, ok := b.m[key]; ok {
		bk = el.Value.(*bucket)
		bk.tokens = refill(bk.tokens, now.Sub(bk.at), rate, burst)
		b.lru.MoveToFront(el)
	} else {
		if n == 0 {
			return true, 0 // a missing bucket is a full one
		}
		if len(b.m) >= b.max {
			b.remove(b.lru.Back())
		}
		bk = &bucket{key: key, tokens: burst}
		b.m[key] = b.lru.PushFront(bk)
	}
	bk.at, bk.rate, bk.burst = now, rate, burst
	ok := bk.tokens >= 1-epsilon
	if ok || force {
		bk.tokens -= n
	}
	if ok {
		return true, 0
	}
	return false, wait(bk.tokens, rate)
}

// dropIdle removes up to two least-recently-used buckets that have refilled: amortised O(1)
// cleanup that keeps idle keys from piling up to the cap.
func (b *Buckets) dropIdle(now time.Time) {
	for range 2 {
		el := b.lru.Back()
		if el == nil {
			return
		}
		bk := el.Value.(*bucket)
		if refill(bk.tokens, now.Sub(bk.at), bk.rate, bk.burst) < bk.burst {
			return
		}
		b.remove(el)
	}
}

func (b *Buckets) remove(el *list.Element) {
	delete(b.m, el.Value.(*bucket).key)
	b.lru.Remove(el)
}

// Len is the number of buckets held (for tests).
func (b *Buckets) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.m)
}

// epsilon is the float noise tolerated when comparing token counts: a bucket refilled to
// 0.9999999999 tokens by arithmetic that should give 1 holds one.
const epsilon = 1e-9

// refill adds elapsed·rate tokens, up to burst.
func refill(tokens float64, elapsed time.Duration, rate, burst float64) float64 {
	if elapsed > 0 {
		tokens += elapsed.Seconds() * rate
	}
	return math.Min(tokens, burst)
}

// wait is how long until a bucket holding tokens (< 1) holds one.
func wait(tokens, rate float64) time.Duration {
	return time.Duration(math.Ceil((1 - tokens) / rate * float64(time.Second)))
}
