package bus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PerTry bounds one attempt of a broker call. A request sent to a stream leader that dies is
// never answered; a short attempt lets the retry reach the new leader soon after an election
// (4–9 s), where one long wait would sit out the whole budget.
const PerTry = 2 * time.Second

// Retry calls f until it succeeds, fails with a non-transient error, ctx ends or budget is
// spent, and returns f's last error. Each attempt gets PerTry. Writes retried this way must
// carry their idempotency key (a message id, an expected revision or sequence), so that an
// attempt that timed out but landed is recognised by the next one.
func Retry(ctx context.Context, budget time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(budget)
	backoff := 50 * time.Millisecond
	for {
		tctx, cancel := context.WithTimeout(ctx, PerTry)
		err := f(tctx)
		cancel()
		if err == nil || !Transient(err) || ctx.Err() != nil || time.Now().Add(backoff).After(deadline) {
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

// ErrStaleRead reports a read that did not yet see what an earlier read of the same stream
// did: answered by a server behind the log (a leader just elected, still applying). It is
// transient: the next read sees it.
var ErrStaleRead = errors.New("read answered by a server behind the log")

// Transient reports errors that mean "the broker is away for now".
func Transient(err error) bool {
	if errors.Is(err, ErrStaleRead) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) {
		return true
	}
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok {
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	return false
}
