// Package retryhold makes a client that ignores Retry-After wait it out on its own connection.
//
// A refusal that says when to come back (429 rate_limited, too_many_attempts) still
// costs the server the reading, parsing and answering of every request the client sends
// anyway. A client in a retry loop on a keep-alive connection, the usual noisy neighbour, can
// send a thousand of them a second. The Holder remembers, per connection, until when the last
// answer on it told the client to wait; a request that arrives on that connection earlier is
// held (at most Max) before it is handled, so that connection carries about one request per
// Retry-After instead of as many as the client can send. Nothing is refused for it: a held
// request is then handled as any other, so a client that sends requests for several channels
// on one connection is delayed, never wrongly refused.
//
// Holding is per connection and costs a parked goroutine. It is for direct clients: a
// connection from a trusted proxy carries many clients, and holding it would delay them all
// (the handler does not ask for a hold there, nor for --limit-exempt clients). A client that
// spreads its requests over many connections, each paced at the Retry-After, is not held; it
// pays the full refusal for each, and the per-address and per-channel limits still bound what
// it gets.
package retryhold

import (
	"context"
	"net"
	"sync"
	"time"
)

// DefaultMax is the longest a request is held.
const DefaultMax = time.Second

// conn is the state of one connection: when its last Retry-After ends.
type conn struct {
	mu    sync.Mutex
	until time.Time
}

type ctxKey struct{}

// ConnContext is an http.Server ConnContext: it gives each connection its state.
func ConnContext(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, ctxKey{}, &conn{})
}

// Holder holds requests on connections that were told to wait. The zero Holder and nil hold
// nothing.
type Holder struct {
	max   time.Duration
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
}

// New returns a holder that holds a request at most max (0: DefaultMax; negative: never).
func New(max time.Duration) *Holder {
	if max == 0 {
		max = DefaultMax
	}
	return &Holder{max: max, now: time.Now, after: time.After}
}

// NewForTest is New with a clock and a timer of the test's.
func NewForTest(max time.Duration, now func() time.Time, after func(time.Duration) <-chan time.Time) *Holder {
	h := New(max)
	h.now, h.after = now, after
	return h
}

// Wait holds the request of ctx while its connection is inside a Retry-After it was given, at
// most Max. It returns ctx's error when the request ends while held (the client went away),
// and nil at once for a context without connection state.
func (h *Holder) Wait(ctx context.Context) error {
	c := h.state(ctx)
	if c == nil {
		return nil
	}
	c.mu.Lock()
	d := c.until.Sub(h.now())
	c.mu.Unlock()
	if d <= 0 {
		return nil
	}
	select {
	case <-h.after(min(d, h.max)):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Told records that the answer to the request of ctx told the client to wait retryAfter.
func (h *Holder) Told(ctx context.Context, retryAfter time.Duration) {
	c := h.state(ctx)
	if c == nil || retryAfter <= 0 {
		return
	}
	until := h.now().Add(retryAfter)
	c.mu.Lock()
	if until.After(c.until) {
		c.until = until
	}
	c.mu.Unlock()
}

func (h *Holder) state(ctx context.Context) *conn {
	if h == nil || h.max <= 0 {
		return nil
	}
	c, _ := ctx.Value(ctxKey{}).(*conn)
	return c
}
