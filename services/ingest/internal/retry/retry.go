// Package retry retries broker calls through short outages (a leader election takes 4–9 s) with
// the same idempotency key, so a try that timed out but landed is recognised by the next one.
package retry

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// PerTry bounds one attempt.
const PerTry = 2 * time.Second

// Do calls f until it succeeds, fails with a non-transient error, ctx ends or budget is spent,
// and returns f's last error.
func Do(ctx context.Context, budget time.Duration, f func(context.Context) error) error {
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

// Transient reports errors that mean "the broker is away for now".
func Transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) {
		return true
	}
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok {
		return apiErr.Code == 503 || apiErr.Code == 408
	}
	return false
}
