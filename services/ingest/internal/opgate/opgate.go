// Package opgate lets the event ops of one channel into the pipeline a few at a time, so that a
// channel spending its whole rate-limit burst at once cannot crowd out the others (DESIGN.md
// §8: no channel can degrade the service for another).
//
// The rate limiter (package ratelimit) bounds how many ops a channel gets; it does not bound
// how many of them run at once. A client that comes back with many connections the moment its
// bucket has refilled spends ~100 tokens in a few milliseconds, and while those ops run every
// other channel's op waits for the CPU behind them: on two cores, eight such connections more
// than doubled the p99 of well-behaved channels (docs/benchmarks.md, noisy neighbour). The
// gate queues an op that finds its channel's slots taken, in arrival order, until one is free.
// A channel's ops are never refused here, only made to take turns; ops of different channels
// never wait for each other.
//
// A slot is held until the op is answered or for at most the lease, whichever comes first. An
// op outliving its lease is waiting on something other than this process's CPU (a slow webhook
// within the dispatch budget, a broker election), so a channel whose ops are slow still starts
// Slots ops per lease: the gate paces it, never stalls it.
//
// Counts are per process: what the gate shares out is this process's CPU.
package opgate

import (
	"context"
	"sync"
	"time"
)

// DefaultLease bounds how long one op holds a slot: several times an op's latency on a busy
// server (2–5 ms), far less than an op that waits on a webhook.
const DefaultLease = 20 * time.Millisecond

// Gate hands out slots per key. A nil *Gate admits everything at once. It is safe for
// concurrent use.
type Gate struct {
	slots int
	lease time.Duration

	mu    sync.Mutex
	lines map[string]*line
}

// line is one key's slots in use and its waiters, oldest first. It exists only while a slot is
// taken.
type line struct {
	busy    int
	waiting []*waiter
}

type waiter struct {
	ready   chan struct{} // closed when granted
	granted bool          // set with ready closed, under the gate's lock
}

// New returns a gate of slots slots per key, each held at most lease (DefaultLease when ≤ 0).
// slots ≤ 0 turns the gate off: it returns nil.
func New(slots int, lease time.Duration) *Gate {
	if slots <= 0 {
		return nil
	}
	if lease <= 0 {
		lease = DefaultLease
	}
	return &Gate{slots: slots, lease: lease, lines: map[string]*line{}}
}

// Enter waits for one of key's slots, first come first served, and returns leave, which gives
// it back; leave must be called once the op is answered (later calls do nothing). The slot
// also comes back by itself when the lease ends. Enter returns ctx's error when ctx ends
// before a slot is free.
func (g *Gate) Enter(ctx context.Context, key string) (leave func(), err error) {
	if g == nil {
		return func() {}, nil
	}
	g.mu.Lock()
	l := g.lines[key]
	if l == nil {
		l = &line{}
		g.lines[key] = l
	}
	if l.busy < g.slots && len(l.waiting) == 0 {
		l.busy++
		g.mu.Unlock()
		return g.hold(key), nil
	}
	w := &waiter{ready: make(chan struct{})}
	l.waiting = append(l.waiting, w)
	g.mu.Unlock()

	select {
	case <-w.ready:
		return g.hold(key), nil
	case <-ctx.Done():
		g.mu.Lock()
		granted := w.granted
		if !granted {
			l.remove(w)
		}
		g.mu.Unlock()
		if granted {
			g.release(key) // handed over as ctx ended: pass it on
		}
		return nil, ctx.Err()
	}
}

// hold starts the lease of a slot of key just taken and returns its leave.
func (g *Gate) hold(key string) func() {
	var once sync.Once
	free := func() { once.Do(func() { g.release(key) }) }
	t := time.AfterFunc(g.lease, free)
	return func() {
		t.Stop()
		free()
	}
}

// release gives a slot of key back: to its oldest waiter, or to nobody.
func (g *Gate) release(key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	l := g.lines[key]
	if l == nil {
		return
	}
	if len(l.waiting) > 0 {
		w := l.waiting[0]
		l.waiting[0] = nil
		l.waiting = l.waiting[1:]
		w.granted = true
		close(w.ready) // the slot passes on: busy stays
		return
	}
	if l.busy--; l.busy <= 0 {
		delete(g.lines, key)
	}
}

// remove drops w from the waiters (its caller gave up).
func (l *line) remove(w *waiter) {
	for i, x := range l.waiting {
		if x == w {
			l.waiting = append(l.waiting[:i], l.waiting[i+1:]...)
			return
		}
	}
}

// Waiting returns how many ops of key wait for a slot (tests, metrics).
func (g *Gate) Waiting(key string) int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if l := g.lines[key]; l != nil {
		return len(l.waiting)
	}
	return 0
}

// Keys returns how many keys hold a slot or wait for one (tests: nothing is left behind).
func (g *Gate) Keys() int {
	if g == nil {
		return 0
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.lines)
}
