// Package ratelimit is ingest's token-bucket limiter, shared by every ingest instance connected
// to one NATS so that a limit holds across replicas (DESIGN.md §8.2), and the event-op limits
// built on it (EventOps).
//
// # How the instances share
//
// Every decision is local, with no broker round trip: a key's bucket holds up to burst tokens
// and refills at rate tokens per second. Every Options.Interval (100 ms) an instance publishes,
// on the core NATS subject bus.RateLimitSubject, how many tokens it took per key since its last
// announcement (nothing when it took none); every other instance subtracts them from its own
// bucket for that key, creating the bucket (full) when it had none. So each instance's buckets
// see the consumption of all instances, late by at most one interval plus transit, and:
//
//   - two instances can both spend a token the other has not heard of yet, at most about
//     rate·Interval tokens per other instance per interval;
//   - at a cold start each instance may spend the whole burst before hearing of the others;
//   - both excesses are repaid: a bucket goes below zero (down to -64·burst) and refills from
//     there, so over a window W the instances together admit rate·W + burst, plus what was
//     spent twice in the last interval and not yet repaid. Once W exceeds the time the
//     cold-start bursts take to repay ((N-1)·burst/rate, 2 s for two instances at a burst of
//     2× the rate), that is within a few percent of one bucket's count (the tests measure it).
//
// Announcements are at-most-once (core NATS): a lost one, a partition, or an instance that
// stops only make limits more lenient for a moment, never stricter. An instance ignores its own
// announcements by the random instance id each carries. Use one Limiter per process and
// namespace keys by purpose ("ops.ch.<channel>"), so all limits share one announcement stream.
// Whoever can publish on the subject can shrink buckets: the broker's access control is the
// boundary, as for every other subject.
//
// # Memory
//
// Keys are spread over shards, each with its own lock. A bucket that has refilled to its burst
// and has nothing left to announce is the same as no bucket and is evicted (every second); at
// most Options.MaxKeys buckets are held: a new key in a full shard evicts its full buckets, or
// if there are none a random one, preferring one with nothing to announce (the evicted key
// starts full again: lenient, never stricter).
// Announcements are split into messages of at most Options.MaxMessageBytes (and of the
// connection's max payload). Keys longer than MaxKeyLen bytes are replaced by a hash of them.
package ratelimit

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"pushgo.dev/gateway/proto/bus"
)

// Defaults of Options.
const (
	// DefaultInterval bounds how late an instance hears of the others' consumption; at 10
	// messages a second per busy instance the cost stays negligible.
	DefaultInterval = 100 * time.Millisecond
	// DefaultMaxKeys bounds memory (~150 bytes a bucket: ~15 MB); keys live only while their
	// bucket is not full, ~2 s after their last use at a burst of 2× the rate.
	DefaultMaxKeys = 100_000
	// DefaultMaxMessageBytes keeps announcements well below NATS's default 1 MB max_payload;
	// it holds ~1500 keys of 40 bytes.
	DefaultMaxMessageBytes = 64 << 10
)

// MaxKeyLen is the longest key kept as given; a longer one is replaced by "#" and the hex
// SHA-256 of it (65 bytes), the same on every instance.
const MaxKeyLen = 200

// debtBursts bounds how far below zero a bucket may go, in bursts: enough to repay every
// instance's cold-start burst and to hold the longest lockout of package attempts (1 h is 60
// bursts of a per-minute budget); it bounds the longest wait at 65·burst/rate.
const debtBursts = 64

// sweepEvery is how many intervals pass between evictions of full buckets.
const sweepEvery = 10

const numShards = 32

// Options tunes a Limiter; zero values take the defaults.
type Options struct {
	// Interval is how often taken tokens are announced to the other instances.
	Interval time.Duration
	// MaxKeys caps the buckets held in memory.
	MaxKeys int
	// MaxMessageBytes caps one announcement message (also capped at the connection's max
	// payload); more keys are split over several messages.
	MaxMessageBytes int
	// Now is the clock of the bucket maths (tests inject one); time.Now when nil.
	Now func() time.Time
}

// Limiter is a set of token buckets by key. It is safe for concurrent use. Close it to stop
// announcing and listening.
type Limiter struct {
	nc       *nats.Conn
	log      *slog.Logger
	id       [idLen]byte
	now      func() time.Time
	interval time.Duration
	maxMsg   int
	perShard int
	seed     maphash.Seed
	shards   [numShards]shard

	sub       *nats.Subscription
	sharing   atomic.Bool // takes are recorded for announcement (a connection, not closed)
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type shard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	dirty   []*bucket // buckets with tokens taken here since the last announcement
}

// bucket is one key's tokens. tokens is brought up to date lazily, at each use.
type bucket struct {
	key         string
	rate, burst float64
	tokens      float64
	at          time.Time // when tokens was last brought up to date
	taken       float64   // tokens taken here since the last announcement
	dirty       bool      // in its shard's dirty list
}

// NewLocal returns a limiter of this process alone (tests, and a gateway without peers).
func NewLocal(opts Options) *Limiter {
	l := newLimiter(nil, opts)
	go l.loop()
	return l
}

// New returns a limiter whose consumption is shared with every other Limiter on nc's NATS;
// with nc nil it is local to this process. log receives problems of the announcements (at
// debug and warn level).
func New(nc *nats.Conn, log *slog.Logger, opts Options) (*Limiter, error) {
	l := newLimiter(log, opts)
	if nc != nil {
		l.nc = nc
		// The instance id tells an instance its own announcements.
		if _, err := rand.Read(l.id[:]); err != nil {
			return nil, fmt.Errorf("ratelimit: instance id: %w", err)
		}
		if mp := int(nc.MaxPayload()); mp > 0 {
			l.maxMsg = max(minMessageBytes, min(l.maxMsg, mp-1024))
		}
		sub, err := nc.Subscribe(bus.RateLimitSubject, l.onMessage)
		if err != nil {
			return nil, fmt.Errorf("ratelimit: subscribe %s: %w", bus.RateLimitSubject, err)
		}
		l.sub = sub
		l.sharing.Store(true)
	}
	go l.loop()
	return l, nil
}

// newLimiter is a limiter with opts' defaults filled in, not yet running.
func newLimiter(log *slog.Logger, opts Options) *Limiter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Limiter{
		log: log, now: opts.Now, seed: maphash.MakeSeed(),
		interval: opts.Interval, maxMsg: opts.MaxMessageBytes,
		stop: make(chan struct{}), done: make(chan struct{}),
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.interval <= 0 {
		l.interval = DefaultInterval
	}
	if l.maxMsg <= 0 {
		l.maxMsg = DefaultMaxMessageBytes
	}
	l.maxMsg = max(l.maxMsg, minMessageBytes)
	maxKeys := opts.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	l.perShard = max(1, maxKeys/numShards)
	for i := range l.shards {
		l.shards[i].buckets = map[string]*bucket{}
	}
	return l
}

// Close stops the limiter: it announces what is left to announce and stops listening. Allow,
// Peek and Charge keep working locally afterwards. Close is idempotent.
func (l *Limiter) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		l.sharing.Store(false)
		if l.sub != nil {
			if uerr := l.sub.Unsubscribe(); uerr != nil && !errors.Is(uerr, nats.ErrConnectionClosed) {
				err = fmt.Errorf("ratelimit: %w", uerr)
			}
		}
	})
	return err
}

// Allow takes one token from key's bucket (refilled at rate tokens per second, capacity burst)
// if one is there; otherwise it reports how long until one will be (counting what the other
// instances took, as far as they announced it). A rate ≤ 0, NaN or above 1e9 is no limit; a
// burst below 1 counts as 1. A key's first use finds its bucket full.
func (l *Limiter) Allow(key string, rate, burst float64) (ok bool, retryAfter time.Duration) {
	if !limited(rate) {
		return true, 0
	}
	key, burst = normKey(key), normBurst(burst)
	now := l.now()
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := l.bucketFor(sh, key, rate, burst, now)
	if b.tokens >= 1 {
		b.tokens--
		l.took(sh, b, 1)
		return true, 0
	}
	return false, b.wait()
}

// Peek reports what Allow would, without taking a token.
func (l *Limiter) Peek(key string, rate, burst float64) (ok bool, retryAfter time.Duration) {
	if !limited(rate) {
		return true, 0
	}
	key, burst = normKey(key), normBurst(burst)
	now := l.now()
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[key]
	if b == nil {
		return true, 0 // no bucket: full
	}
	b.setParams(rate, burst)
	b.refill(now)
	if b.tokens >= 1 {
		return true, 0
	}
	return false, b.wait()
}

// Charge takes n tokens whatever is left; the bucket may go negative (down to -64·burst),
// which lengthens the wait. n ≤ 0 (or NaN) does nothing.
func (l *Limiter) Charge(key string, rate, burst, n float64) {
	if !limited(rate) || !(n > 0) {
		return
	}
	n = min(n, maxTaken)
	key, burst = normKey(key), normBurst(burst)
	now := l.now()
	sh := l.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := l.bucketFor(sh, key, rate, burst, now)
	b.spend(n)
	l.took(sh, b, n)
}

// limited reports whether rate is a limit: above zero and at most 1e9 per second (more is
// none in practice, and keeps announcements in range).
func limited(rate float64) bool { return rate > 0 && rate <= maxRate }

func normBurst(burst float64) float64 {
	if !(burst >= 1) { // NaN too
		return 1
	}
	return min(burst, maxBurst)
}

func normKey(key string) string {
	if len(key) <= MaxKeyLen {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "#" + hex.EncodeToString(sum[:])
}

func (l *Limiter) shard(key string) *shard {
	return &l.shards[maphash.String(l.seed, key)%numShards]
}

// bucketFor returns key's bucket brought up to now, creating it full (evicting another when
// the shard is full). sh is locked.
func (l *Limiter) bucketFor(sh *shard, key string, rate, burst float64, now time.Time) *bucket {
	b := sh.buckets[key]
	if b == nil {
		if len(sh.buckets) >= l.perShard {
			l.makeRoom(sh, now)
		}
		b = &bucket{key: key, rate: rate, burst: burst, tokens: burst, at: now}
		sh.buckets[key] = b
		return b
	}
	b.setParams(rate, burst)
	b.refill(now)
	return b
}

// makeRoom evicts the full buckets of sh, or if there are none one bucket at random (one with
// nothing to announce when it finds one). sh is locked.
func (l *Limiter) makeRoom(sh *shard, now time.Time) {
	sweepShard(sh, now)
	if len(sh.buckets) < l.perShard {
		return
	}
	var victim string
	for k, b := range sh.buckets { // map order is random
		victim = k
		if !b.dirty {
			break
		}
	}
	// A dirty victim stays in the dirty list, so what it took is still announced.
	delete(sh.buckets, victim)
}

// took records n tokens taken here, to be announced. sh is locked.
func (l *Limiter) took(sh *shard, b *bucket, n float64) {
	if !l.sharing.Load() {
		return
	}
	b.taken = min(b.taken+n, maxTaken)
	if !b.dirty {
		b.dirty = true
		sh.dirty = append(sh.dirty, b)
	}
}

// setParams follows a change of a key's rate or burst (a changed limit); the tokens held are
// capped at the new burst.
func (b *bucket) setParams(rate, burst float64) {
	if b.rate == rate && b.burst == burst {
		return
	}
	b.rate, b.burst = rate, burst
	b.tokens = min(b.tokens, burst)
}

// refill brings tokens up to now. A clock that went back refills nothing.
func (b *bucket) refill(now time.Time) {
	if d := now.Sub(b.at); d > 0 {
		b.tokens = min(b.burst, b.tokens+d.Seconds()*b.rate)
		b.at = now
	}
}

// spend takes n tokens, down to the debt floor.
func (b *bucket) spend(n float64) {
	b.tokens = max(b.tokens-n, -debtBursts*b.burst)
}

// maxWait caps a reported wait (a tiny rate would overflow a Duration).
const maxWait = 24 * time.Hour

// wait is how long until the bucket holds one token.
func (b *bucket) wait() time.Duration {
	need := 1 - b.tokens
	if need <= 0 {
		return 0
	}
	secs := need / b.rate
	if secs >= maxWait.Seconds() {
		return maxWait
	}
	return time.Duration(math.Ceil(secs * float64(time.Second)))
}

// full reports whether the bucket has refilled to its burst by now.
func (b *bucket) full(now time.Time) bool {
	t := b.tokens
	if d := now.Sub(b.at); d > 0 {
		t += d.Seconds() * b.rate
	}
	return t >= b.burst
}

// sweepShard evicts the buckets of sh that are full and have nothing to announce. sh is locked.
func sweepShard(sh *shard, now time.Time) {
	for k, b := range sh.buckets {
		if !b.dirty && b.full(now) {
			delete(sh.buckets, k)
		}
	}
}

// loop announces every interval and sweeps every sweepEvery intervals, until Close.
func (l *Limiter) loop() {
	defer close(l.done)
	t := time.NewTicker(l.interval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-l.stop:
			l.announce()
			return
		case <-t.C:
			l.announce()
			if n%sweepEvery == 0 {
				l.sweep()
			}
		}
	}
}

func (l *Limiter) sweep() {
	now := l.now()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		sweepShard(sh, now)
		sh.mu.Unlock()
	}
}

// pending collects and resets what was taken here since the last call.
func (l *Limiter) pending() []record {
	var recs []record
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for _, b := range sh.dirty {
			if b.taken > 0 {
				recs = append(recs, record{key: b.key, rate: b.rate, burst: b.burst, taken: b.taken})
			}
			b.taken, b.dirty = 0, false
		}
		clear(sh.dirty)
		sh.dirty = sh.dirty[:0]
		sh.mu.Unlock()
	}
	return recs
}

// announce publishes what was taken here since the last announcement.
func (l *Limiter) announce() {
	if l.nc == nil {
		return
	}
	recs := l.pending()
	if len(recs) == 0 {
		return
	}
	for _, msg := range encode(l.id, recs, l.maxMsg) {
		if err := l.nc.Publish(bus.RateLimitSubject, msg); err != nil {
			// Not announced: the others are lenient for a moment.
			l.log.Debug("rate-limit announcement not sent", "err", err)
			return
		}
	}
}

// onMessage applies another instance's announcement.
func (l *Limiter) onMessage(m *nats.Msg) {
	id, recs, err := decode(m.Data)
	if err != nil {
		l.log.Warn("undecodable rate-limit announcement dropped", "err", err, "bytes", len(m.Data))
		return
	}
	if id == l.id {
		return
	}
	l.apply(recs)
}

// apply subtracts tokens other instances took. A key unknown here gets a bucket, full before
// the subtraction, with the announced rate and burst; a known key keeps the rate and burst its
// local callers give.
func (l *Limiter) apply(recs []record) {
	now := l.now()
	for _, r := range recs {
		key := normKey(r.key)
		sh := l.shard(key)
		sh.mu.Lock()
		b := sh.buckets[key]
		if b == nil {
			b = l.bucketFor(sh, key, r.rate, r.burst, now)
		} else {
			b.refill(now)
		}
		b.spend(r.taken)
		sh.mu.Unlock()
	}
}
