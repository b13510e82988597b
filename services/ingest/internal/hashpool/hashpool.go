// Package hashpool bounds the password hashes computed at once in one process (DESIGN.md §8.2
// "password hashes in flight"). An argon2id computation holds its whole memory cost (19 MiB
// here) until it returns, so without a bound N concurrent wrong passwords hold N×19 MiB, and
// the Go heap grows to about twice its live size before a collection. With the pool, memory
// for hashing is at most Size×19 MiB live (≈ 2×Size×19 MiB of heap), whatever the number of
// callers.
//
// A caller that finds every slot taken queues for at most the pool's wait (1 s by default),
// first come first served, then gets ErrBusy (answered 503 busy with Retry-After).
package hashpool

import (
	"context"
	"errors"
	"time"
)

// DefaultWait is how long a caller queues for a slot before ErrBusy (DESIGN.md §8.2: ≤ 1 s).
const DefaultWait = time.Second

// ErrBusy is returned when no slot was free within the pool's wait.
var ErrBusy = errors.New("hashpool: every hashing slot is busy")

// Pool runs at most Size functions at once. A nil *Pool is no bound: Do runs f at once. It is
// safe for concurrent use.
type Pool struct {
	slots chan struct{}
	wait  time.Duration
}

// New returns a pool of size slots whose callers queue at most wait (DefaultWait when ≤ 0).
// size ≤ 0 turns the bound off: it returns nil.
func New(size int, wait time.Duration) *Pool {
	if size <= 0 {
		return nil
	}
	if wait <= 0 {
		wait = DefaultWait
	}
	return &Pool{slots: make(chan struct{}, size), wait: wait}
}

// Do runs f in a slot, waiting for one at most the pool's wait; it returns ErrBusy when none
// came free in time and ctx's error when ctx ended first. f runs on the caller's goroutine.
// Waiters are served in arrival order (Go queues blocked channel senders FIFO).
func (p *Pool) Do(ctx context.Context, f func()) error {
	if p == nil {
		f()
		return nil
	}
	select {
	case p.slots <- struct{}{}:
	default:
		t := time.NewTimer(p.wait)
		defer t.Stop()
		select {
		case p.slots <- struct{}{}:
		case <-t.C:
			return ErrBusy
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() { <-p.slots }()
	f()
	return nil
}
